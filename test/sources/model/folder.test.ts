import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openModelFolder } from '../../../sources/model/folder.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { tempDir } from '../../helpers/temp.ts';

function json(file: string): any {
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
}

/** Context limits the folder's JSON files state, read here straight from the files. */
function statedContexts(dir: string): number[] {
  const cfg = json(path.join(dir, 'config.json')) ?? {};
  const genai = json(path.join(dir, 'genai_config.json')) ?? {};
  const tokc = json(path.join(dir, 'tokenizer_config.json')) ?? {};
  return [cfg.max_position_embeddings, cfg.n_positions, genai.search?.max_length, genai.model?.context_length, tokc.model_max_length]
    .filter((v) => typeof v === 'number' && v < 1e8);
}

async function rejectsWith(fn: () => Promise<unknown>, code: string, text: string): Promise<void> {
  try {
    await fn();
  } catch (e: any) {
    assert.is(e.code, code, e.message);
    assert.ok(e.message.includes(text), e.message);
    return;
  }
  assert.unreachable('should have thrown');
}

function touch(file: string, content = ''): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
}

test('stories260K-onnx: root model.onnx, no external data, context and vocab from config', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'folder resolution');
  if (!dir) return;
  const f = await openModelFolder(dir);
  assert.is(f.onnxPath, path.join(dir, 'model.onnx'));
  assert.equal(f.variants, { fp32: path.join(dir, 'model.onnx') });
  assert.equal(f.externalData, []);
  assert.is(f.maxContext, Math.min(...statedContexts(dir)));
  assert.is(f.maxContext, 512);
  assert.is(f.vocabSize, json(path.join(dir, 'config.json')).vocab_size);
  assert.is(f.tokenizerDir, dir);
  assert.is(f.config?.model_type, 'llama');
});

test('tiny-random-llama-fp16: external data beside model.onnx, no config.json', async () => {
  const dir = sharedPath('models/tiny-random-llama-fp16', 'folder resolution');
  if (!dir) return;
  const f = await openModelFolder(dir);
  assert.is(f.onnxPath, path.join(dir, 'model.onnx'));
  assert.equal(f.externalData, [path.join(dir, 'model.onnx.data')]);
  assert.is(f.config, null);
  assert.is(f.maxContext, Math.min(...statedContexts(dir)));
  assert.is(f.maxContext, 2048);
  assert.is(f.vocabSize, json(path.join(dir, 'genai_config.json')).model.vocab_size);
});

test('tiny-random-gpt2-fp32: the single past.onnx, genai-style nested vocab_size', async () => {
  const dir = sharedPath('models/tiny-random-gpt2-fp32', 'folder resolution');
  if (!dir) return;
  const f = await openModelFolder(dir);
  assert.is(f.onnxPath, path.join(dir, 'past.onnx'));
  assert.equal(f.variants, { fp32: path.join(dir, 'past.onnx') });
  assert.equal(f.externalData, []);
  const contexts = statedContexts(dir);
  assert.ok(contexts.includes(2048) && contexts.includes(512)); // tokenizer says 2048, model 512: smallest wins
  assert.is(f.maxContext, 512);
  assert.is(f.vocabSize, 1000);
});

test('transformers.js layout: onnx/model_<tag>.onnx variants and model.onnx_data', async () => {
  const dir = tempDir('ql-folder-');
  const tags = ['fp16', 'q4', 'q4f16', 'bnb4', 'int8', 'uint8', 'quantized'];
  touch(path.join(dir, 'onnx', 'model.onnx'));
  touch(path.join(dir, 'onnx', 'model.onnx_data'));
  for (const t of tags) touch(path.join(dir, 'onnx', `model_${t}.onnx`));
  touch(path.join(dir, 'tokenizer.json'), '{}');
  touch(path.join(dir, 'config.json'), JSON.stringify({ vocab_size: 49152, max_position_embeddings: 8192 }));
  touch(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 1e30 }));
  const f = await openModelFolder(dir);
  assert.is(f.onnxPath, path.join(dir, 'onnx', 'model.onnx'));
  const expected: Record<string, string> = { fp32: path.join(dir, 'onnx', 'model.onnx') };
  for (const t of tags) expected[t] = path.join(dir, 'onnx', `model_${t}.onnx`);
  assert.equal(f.variants, expected);
  assert.equal(f.externalData, [path.join(dir, 'onnx', 'model.onnx_data')]);
  assert.is(f.maxContext, 8192); // 1e30 ignored
  assert.is(f.vocabSize, 49152);
  assert.is(f.tokenizerDir, dir);
});

test('Optimum layouts: root model.onnx wins over onnx/, decoder_model_merged base, .onnx.data', async () => {
  const a = tempDir('ql-folder-');
  touch(path.join(a, 'model.onnx'));
  touch(path.join(a, 'model.onnx.data'));
  touch(path.join(a, 'onnx', 'model.onnx'));
  const fa = await openModelFolder(a);
  assert.is(fa.onnxPath, path.join(a, 'model.onnx'));
  assert.equal(fa.externalData, [path.join(a, 'model.onnx.data')]);
  assert.is(fa.maxContext, null);
  assert.is(fa.vocabSize, null);

  const b = tempDir('ql-folder-');
  touch(path.join(b, 'onnx', 'decoder_model_merged.onnx'));
  touch(path.join(b, 'onnx', 'decoder_model_merged_quantized.onnx'));
  touch(path.join(b, 'onnx', 'decoder_with_past_model.onnx'));
  touch(path.join(b, 'onnx', 'tokenizer.json'));
  const fb = await openModelFolder(b);
  assert.is(fb.onnxPath, path.join(b, 'onnx', 'decoder_model_merged.onnx'));
  assert.is(fb.variants.quantized, path.join(b, 'onnx', 'decoder_model_merged_quantized.onnx'));
  assert.is(fb.tokenizerDir, path.join(b, 'onnx'));
});

test('errors: missing folder, no .onnx, ambiguous .onnx files, malformed config.json', async () => {
  const missing = path.join(os.tmpdir(), 'ql-no-such-model-folder');
  await rejectsWith(() => openModelFolder(missing, 'pipeline.yaml:4 (model.path)'), 'MODEL', `model folder not found: ${missing}`);
  try {
    await openModelFolder(missing, 'pipeline.yaml:4 (model.path)');
  } catch (e: any) {
    assert.ok(e.message.startsWith('pipeline.yaml:4 (model.path): '));
  }
  const empty = tempDir('ql-folder-');
  await rejectsWith(() => openModelFolder(empty), 'MODEL', 'no .onnx file');
  const two = tempDir('ql-folder-');
  touch(path.join(two, 'a.onnx'));
  touch(path.join(two, 'b.onnx'));
  await rejectsWith(() => openModelFolder(two), 'MODEL', 'a.onnx, b.onnx');
  const bad = tempDir('ql-folder-');
  touch(path.join(bad, 'model.onnx'));
  touch(path.join(bad, 'config.json'), '{oops');
  await rejectsWith(() => openModelFolder(bad), 'MODEL', 'config.json');
});

test.run();
