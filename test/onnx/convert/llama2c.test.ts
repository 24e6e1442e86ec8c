import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { convertLlama2c, readLlama2cCheckpoint } from '../../../onnx/convert/llama2c.ts';
import { SHARED_DIR, sharedPath } from '../../helpers/shared.ts';
import { datasetPrompts } from './fixture-text.ts';
import { tempDir } from '../../helpers/temp.ts';

const tmp = tempDir('llama2c-');

function int64(rows: number[][]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
}

let converted: string | null = null;
async function convertedFolder(): Promise<string | null> {
  const src = sharedPath('models/stories260K', 'llama2c conversion');
  if (!src) return null;
  if (!converted) converted = await convertLlama2c(path.join(src, 'stories260K.bin'), path.join(src, 'tok512.bin'), path.join(tmp, 'stories260K'));
  return converted;
}

test('converted stories260K equals the shared stories260K-onnx on 8 left-padded BoolQ prompts (max |Δlogit| < 1e-4)', async () => {
  const dir = await convertedFolder();
  const ref = sharedPath('models/stories260K-onnx', 'llama2c logits');
  if (!dir || !ref) return;
  // Tokenize with the shared (independent) tokenizer so only the graphs differ.
  const tok = new Tokenizer(JSON.parse(readFileSync(path.join(ref, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(path.join(ref, 'tokenizer_config.json'), 'utf8')));
  const prompts = datasetPrompts(SHARED_DIR, 'boolq', 8).map((p) => `Respond with True or False only.\n${p}\nAnswer:`);
  assert.is(prompts.length, 8);
  const encoded = prompts.map((p) => tok.encode(p).ids);
  const S = Math.max(...encoded.map((e) => e.length));
  const ids = encoded.map((e) => [...Array(S - e.length).fill(0), ...e]);
  const mask = encoded.map((e) => [...Array(S - e.length).fill(0), ...Array(e.length).fill(1)]);
  assert.ok(mask.some((m) => m[0] === 0), 'at least one row is padded');
  const feeds = { input_ids: int64(ids), attention_mask: int64(mask) };
  const ours = (await (await ort.InferenceSession.create(path.join(dir, 'model.onnx'))).run(feeds)).logits;
  const theirs = (await (await ort.InferenceSession.create(path.join(ref, 'model.onnx'))).run(feeds)).logits;
  assert.equal(ours.dims, theirs.dims);
  const a = ours.data as Float32Array, b = theirs.data as Float32Array;
  let d = 0;
  for (let r = 0; r < 8; r++)
    for (let t = 0; t < S; t++) {
      if (!mask[r][t]) continue;
      for (let v = 0; v < 512; v++) d = Math.max(d, Math.abs(a[(r * S + t) * 512 + v] - b[(r * S + t) * 512 + v]));
    }
  assert.ok(d < 1e-4, `max |Δlogit| = ${d}`);
});

test('greedy decoding of 50 tokens from BOS (full rerun per step) matches reference_greedy.json', async () => {
  const dir = await convertedFolder();
  const src = sharedPath('models/stories260K', 'greedy golden');
  if (!dir || !src) return;
  const golden = JSON.parse(readFileSync(path.join(src, 'reference_greedy.json'), 'utf8'));
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  const seq = [1];
  for (let step = 0; step < 50; step++) {
    const out = await session.run({ input_ids: int64([seq]), attention_mask: int64([seq.map(() => 1)]) });
    const logits = (out.logits.data as Float32Array).subarray((seq.length - 1) * 512, seq.length * 512);
    let best = 0;
    for (let v = 1; v < 512; v++) if (logits[v] > logits[best]) best = v;
    if (step === 0) assert.ok(Math.abs(logits[403] - 17.0235) < 1e-3, `logit[403] at position 0 = ${logits[403]}`);
    seq.push(best);
  }
  assert.equal(seq.slice(1), golden.greedy_token_ids.slice(0, 50));
});

test('config.json describes the checkpoint (header values, tied, interleaved RoPE)', async () => {
  const dir = await convertedFolder();
  if (!dir) return;
  const c = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(
    [c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.vocab_size, c.max_position_embeddings, c.tie_word_embeddings, c.quantlens_rope_layout],
    [64, 172, 5, 8, 4, 8, 512, 512, true, 'interleaved'],
  );
});

test('a truncated or foreign file is a CONVERT error naming the file', () => {
  const src = sharedPath('models/stories260K', 'llama2c errors');
  if (!src) return;
  const bytes = readFileSync(path.join(src, 'stories260K.bin'));
  const cut = path.join(tmp, 'cut.bin');
  writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
  const junk = path.join(tmp, 'junk.bin');
  writeFileSync(junk, Buffer.from('{"this is": "json, not a checkpoint"}'));
  for (const f of [cut, junk, path.join(tmp, 'absent.bin')]) {
    try {
      readLlama2cCheckpoint(f);
      assert.unreachable(f);
    } catch (e: any) {
      assert.is(e.code, 'CONVERT', f);
      assert.match(e.message, f);
    }
  }
});

test.run();
