import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../../../onnx/convert/index.ts';
import type { LlamaConfig } from '../../../onnx/models/llama-config.ts';
import { demoWeights } from '../../../sources/demo/demo-model.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { hfConfig, hfTensors, writeSafetensors } from './hf-checkpoint.ts';
import { tempDir } from '../../helpers/temp.ts';

const tmp = tempDir('convert-index-');

async function vocabOf(dir: string): Promise<number> {
  const s = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  const r = await s.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from([1n, 5n]), [1, 2]), attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n]), [1, 2]) });
  return r.logits.dims[2];
}

test('a llama2.c .bin (tokenizer found beside it) and its folder are detected as llama2c', async () => {
  const src = sharedPath('models/stories260K', 'convert detection');
  if (!src) return;
  const a = await convertCheckpoint(path.join(src, 'stories260K.bin'), path.join(tmp, 'from-file'));
  assert.equal(a, { kind: 'llama2c', outDir: path.join(tmp, 'from-file') });
  const b = await convertCheckpoint(src, path.join(tmp, 'from-folder'));
  assert.is(b.kind, 'llama2c');
  assert.is(await vocabOf(b.outDir), 512);
  assert.equal(readFileSync(path.join(a.outDir, 'model.onnx')), readFileSync(path.join(b.outDir, 'model.onnx')));
});

test('a folder with *.safetensors is detected as safetensors', async () => {
  const cfg: LlamaConfig = {
    modelType: 'llama', hiddenSize: 16, intermediateSize: 24, numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 8, vocabSize: 20,
    maxPositions: 16, rmsNormEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tieWordEmbeddings: false, attentionBias: false, bosId: 1, eosId: 2, padId: 0,
  };
  const dir = path.join(tmp, 'hf');
  mkdirSync(dir);
  writeSafetensors(path.join(dir, 'model.safetensors'), hfTensors(cfg, demoWeights(cfg, 3), false), 'BF16');
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfig(cfg)));
  writeFileSync(path.join(dir, 'tokenizer.json'), '{"model":{"type":"BPE","vocab":{},"merges":[]}}');
  const r = await convertCheckpoint(dir, path.join(tmp, 'hf-out'));
  assert.is(r.kind, 'safetensors');
  assert.is(await vocabOf(r.outDir), 20);
});

test('bad inputs are clear CONVERT / UNSUPPORTED errors', async () => {
  const expectError = async (src: string, code: string, needle: string, opts = {}) => {
    try {
      await convertCheckpoint(src, path.join(tmp, 'never'), opts);
      assert.unreachable(src);
    } catch (e: any) {
      assert.is(e.code, code, e.message);
      assert.match(e.message, needle);
    }
  };
  await expectError(path.join(tmp, 'absent'), 'CONVERT', 'not found');
  const empty = path.join(tmp, 'empty');
  mkdirSync(empty);
  await expectError(empty, 'CONVERT', 'no *.safetensors');
  writeFileSync(path.join(tmp, 'notes.txt'), 'x');
  await expectError(path.join(tmp, 'notes.txt'), 'CONVERT', 'notes.txt');
  const pt = path.join(tmp, 'pt');
  mkdirSync(pt);
  writeFileSync(path.join(pt, 'pytorch_model.bin'), 'x');
  await expectError(pt, 'UNSUPPORTED', 'safetensors');
  const src = sharedPath('models/stories260K', 'convert errors');
  if (!src) return;
  const twoTok = path.join(tmp, 'two-tok');
  mkdirSync(twoTok);
  copyFileSync(path.join(src, 'stories260K.bin'), path.join(twoTok, 'model.bin'));
  await expectError(twoTok, 'CONVERT', 'no llama2.c tokenizer');
  copyFileSync(path.join(src, 'tok512.bin'), path.join(twoTok, 'tok512.bin'));
  copyFileSync(path.join(src, 'tok512.bin'), path.join(twoTok, 'tokenizer.bin'));
  await expectError(path.join(twoTok, 'model.bin'), 'CONVERT', 'several tokenizer files');
  const ok = await convertCheckpoint(path.join(twoTok, 'model.bin'), path.join(tmp, 'explicit'), { tokenizer: path.join(twoTok, 'tok512.bin') });
  assert.is(ok.kind, 'llama2c');
});

test.run();
