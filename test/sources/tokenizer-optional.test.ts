/**
 * tokenizer.json files with optional sections left out (as some exporters write them) load, and
 * the vocabulary size is the real id range, added tokens included.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadTokenizer, checkTokenizerFitsModel } from '../../sources/tokenizer.ts';
import type { ModelFolder } from '../../sources/model/folder.ts';
import { sharedPath } from '../helpers/shared.ts';
import { tempDir } from '../helpers/temp.ts';

function folderWith(json: Record<string, unknown>, config?: Record<string, unknown>): string {
  const dir = tempDir('ql-tokopt-');
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  if (config) writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

test('no "decoder" (and no "added_tokens"): loads, encodes as the full file does', async () => {
  const src = sharedPath('models/exporters/hf-llama', 'tokenizer without optional sections');
  if (!src) return;
  const full = JSON.parse(readFileSync(path.join(src, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(path.join(src, 'tokenizer_config.json'), 'utf8'));
  const ref = await loadTokenizer(src);
  const { decoder: _d, ...noDecoder } = full;
  const a = await loadTokenizer(folderWith(noDecoder, config));
  const texts = ['Hello world', 'Is the sky blue?\nAnswer:', ' True'];
  for (const t of texts) assert.equal(Array.from(a.encode(t)), Array.from(ref.encode(t)), t);
  assert.is(a.vocabSize, ref.vocabSize);
  assert.type(a.decodeToken(300), 'string');
  const { added_tokens: _a, post_processor: _p, ...bare } = full;
  const b = await loadTokenizer(folderWith(bare));
  assert.equal(Array.from(b.encode('Hello world')).filter((id) => id !== ref.bosId), Array.from(ref.encode('Hello world')).filter((id) => id !== ref.bosId));
  assert.is(b.vocabSize, Object.keys(full.model.vocab).length);
});

test('vocabulary size counts added tokens beyond the model vocabulary; the model check uses it', async () => {
  const src = sharedPath('models/exporters/hf-llama', 'tokenizer id range');
  if (!src) return;
  const full = JSON.parse(readFileSync(path.join(src, 'tokenizer.json'), 'utf8'));
  const modelVocab = Math.max(...(Object.values(full.model.vocab) as number[])) + 1;
  const extra = { id: modelVocab + 7, content: '<|extra|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  const tok = await loadTokenizer(folderWith({ ...full, added_tokens: [...full.added_tokens, extra] }));
  assert.is(tok.vocabSize, modelVocab + 8);
  const folder = { vocabSize: modelVocab, tokenizerDir: src } as ModelFolder;
  assert.throws(() => checkTokenizerFitsModel(tok, folder, 'pipeline.yaml:2 (model)'), (e: Error) => e.message === `pipeline.yaml:2 (model): tokenizer vocabulary (${modelVocab + 8}) exceeds the model's (${modelVocab})`);
  checkTokenizerFitsModel(tok, { ...folder, vocabSize: modelVocab + 8 }); // fits exactly
});

test.run();
