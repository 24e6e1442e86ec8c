import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { convertLlama2cTokenizer, mergesFromScores, readLlama2cTokenizer } from '../../../onnx/convert/llama2c-tokenizer.ts';
import { SHARED_DIR, sharedPath } from '../../helpers/shared.ts';
import { datasetPrompts } from './fixture-text.ts';

const EDGE_CASES = ['', ' ', '  two  spaces ', 'Hello world', 'naïve café — 東京 🙂', 'tab\there', 'line\nbreak\r\nwindows', '123 + 456 = 579', 'Once upon a time', '\u2581literal marker'];

test('tok512.bin → tokenizer.json encodes ~200 texts exactly like the shared stories260K-onnx tokenizer', () => {
  const src = sharedPath('models/stories260K', 'tokenizer conversion');
  const ref = sharedPath('models/stories260K-onnx', 'tokenizer reference');
  if (!src || !ref) return;
  const { tokenizerJson, tokenizerConfig } = convertLlama2cTokenizer(path.join(src, 'tok512.bin'), 512, 512);
  const ours = new Tokenizer(JSON.parse(JSON.stringify(tokenizerJson)), tokenizerConfig);
  const theirs = new Tokenizer(JSON.parse(readFileSync(path.join(ref, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(path.join(ref, 'tokenizer_config.json'), 'utf8')));
  const texts = [
    ...datasetPrompts(SHARED_DIR, 'boolq', 60),
    ...datasetPrompts(SHARED_DIR, 'piqa', 50),
    ...datasetPrompts(SHARED_DIR, 'hellaswag', 40),
    ...datasetPrompts(SHARED_DIR, 'toxicity', 40),
    ...EDGE_CASES,
  ];
  assert.ok(texts.length >= 200, `${texts.length} texts`);
  let multiToken = 0;
  for (const t of texts) {
    const a = ours.encode(t).ids;
    assert.equal(a, theirs.encode(t).ids, JSON.stringify(t));
    assert.is(a[0], 1, 'BOS first');
    if (a.length > 3) multiToken++;
    // A literal '▁' decodes as a space in every Llama tokenizer; all else must round-trip.
    if (!t.includes('\u2581')) assert.is(ours.decode(a, { skip_special_tokens: true }), t, 'decode round trip');
  }
  assert.ok(multiToken > 150);
});

test('merges are rebuilt identically to the shared tokenizer.json (order included)', () => {
  const src = sharedPath('models/stories260K', 'merges');
  const ref = sharedPath('models/stories260K-onnx', 'merges reference');
  if (!src || !ref) return;
  const { tokenizerJson } = convertLlama2cTokenizer(path.join(src, 'tok512.bin'), 512, 512);
  const theirs = JSON.parse(readFileSync(path.join(ref, 'tokenizer.json'), 'utf8'));
  const model = tokenizerJson.model as any;
  assert.equal(model.vocab, theirs.model.vocab);
  assert.equal(model.merges, theirs.model.merges);
});

test('mergesFromScores: every two-piece split of a piece, best score first, longer left part first', () => {
  const pieces = ['<unk>', '<s>', '</s>', 'a', 'b', 'c', 'ab', 'bc', 'abc'];
  const scores = [0, 0, 0, 0, 0, 0, -1, -0.5, -2];
  assert.equal(mergesFromScores(pieces, scores), [['b', 'c'], ['a', 'b'], ['ab', 'c'], ['a', 'bc']]);
});

test('a tokenizer file that does not match the vocab size is a CONVERT error', () => {
  const src = sharedPath('models/stories260K', 'tokenizer errors');
  if (!src) return;
  for (const n of [500, 600]) {
    try {
      readLlama2cTokenizer(path.join(src, 'tok512.bin'), n);
      assert.unreachable();
    } catch (e: any) {
      assert.is(e.code, 'CONVERT');
      assert.match(e.message, 'tok512.bin');
    }
  }
});

test.run();
