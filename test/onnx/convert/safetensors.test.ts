import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { convertSafetensors } from '../../../onnx/convert/safetensors.ts';
import { readOnnxModel, readTensorBytes } from '../../../onnx/model-reader.ts';
import { readLlama2cCheckpoint } from '../../../onnx/convert/llama2c.ts';
import type { LlamaConfig } from '../../../onnx/models/llama-config.ts';
import type { LlamaWeights } from '../../../onnx/models/llama-graph.ts';
import { SeededRandom } from '../../../core/random.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { hfConfig, hfTensors, writeSafetensors, type Dtype } from './hf-checkpoint.ts';
import { referenceForward } from '../models/llama-reference.ts';
import { tempDir } from '../../helpers/temp.ts';

const tmp = tempDir('safetensors-');

/** stories260K as an HF checkpoint folder: permuted q/k, `shards` files (+ index when > 1). */
function writeStoriesCheckpoint(name: string, dtype: Dtype, opts: { shards?: number; untied?: boolean } = {}): string | null {
  const src = sharedPath('models/stories260K', 'safetensors fixture');
  const ref = sharedPath('models/stories260K-onnx', 'safetensors fixture tokenizer');
  if (!src || !ref) return null;
  const { config, weights } = readLlama2cCheckpoint(path.join(src, 'stories260K.bin'));
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  if (opts.untied) {
    weights.lmHead = weights.embed.slice();
    config.tieWordEmbeddings = false;
  }
  const tensors = Object.entries(hfTensors(config, weights, true));
  const shards = opts.shards ?? 1;
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = shards === 1 ? 'model.safetensors' : `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const part = tensors.filter((_, i) => i % shards === s);
    for (const [n] of part) weightMap[n] = file;
    writeSafetensors(path.join(dir, file), Object.fromEntries(part), dtype);
  }
  if (shards > 1) writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfig(config, { torch_dtype: dtype })));
  copyFileSync(path.join(ref, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  copyFileSync(path.join(ref, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  return dir;
}

const IDS = [[0, 0, 1, 403, 407, 261, 378, 432, 383], [1, 286, 261, 376, 298, 315, 421, 270, 300]];
const MASK = [[0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]];
const feeds = () => ({
  input_ids: new ort.Tensor('int64', BigInt64Array.from(IDS.flat().map(BigInt)), [2, 9]),
  attention_mask: new ort.Tensor('int64', BigInt64Array.from(MASK.flat().map(BigInt)), [2, 9]),
});

async function maxDiffVsStoriesOnnx(modelDir: string): Promise<{ diff: number; argmaxAgree: number }> {
  const ref = sharedPath('models/stories260K-onnx', 'reference logits')!;
  const a = (await (await ort.InferenceSession.create(path.join(modelDir, 'model.onnx'))).run(feeds())).logits.data as Float32Array;
  const b = (await (await ort.InferenceSession.create(path.join(ref, 'model.onnx'))).run(feeds())).logits.data as Float32Array;
  let diff = 0, agree = 0, total = 0;
  for (let r = 0; r < 2; r++)
    for (let t = 0; t < 9; t++) {
      if (!MASK[r][t]) continue;
      const o = (r * 9 + t) * 512;
      let ba = 0, bb = 0;
      for (let v = 0; v < 512; v++) {
        diff = Math.max(diff, Math.abs(a[o + v] - b[o + v]));
        if (a[o + v] > a[o + ba]) ba = v;
        if (b[o + v] > b[o + bb]) bb = v;
      }
      total++;
      if (ba === bb) agree++;
    }
  return { diff, argmaxAgree: agree / total };
}

test('HF-layout fp32 stories260K (rotate_half-permuted q/k) converts to the same logits as stories260K-onnx', async () => {
  const dir = writeStoriesCheckpoint('f32', 'F32');
  if (!dir) return;
  const out = await convertSafetensors(dir, path.join(tmp, 'f32-out'));
  const { diff } = await maxDiffVsStoriesOnnx(out);
  assert.ok(diff < 1e-4, `max |Δlogit| ${diff}`);
  const c = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.is(c.quantlens_rope_layout, 'half');
  assert.equal(readFileSync(path.join(out, 'tokenizer.json')), readFileSync(path.join(dir, 'tokenizer.json')));
});

test('sharded checkpoint (3 shards + index) with an untied lm_head converts identically', async () => {
  const dir = writeStoriesCheckpoint('sharded', 'F32', { shards: 3, untied: true });
  if (!dir) return;
  const { diff } = await maxDiffVsStoriesOnnx(await convertSafetensors(dir, path.join(tmp, 'sharded-out')));
  assert.ok(diff < 1e-4, `max |Δlogit| ${diff}`);
});

test('streamed conversion (weights written to model.onnx.data one by one) of a sharded checkpoint = the unsharded one in memory', async () => {
  const sharded = writeStoriesCheckpoint('stream-sharded', 'F32', { shards: 3, untied: true });
  const single = writeStoriesCheckpoint('stream-single', 'F32', { untied: true });
  if (!sharded || !single) return;
  const streamed = await convertSafetensors(sharded, path.join(tmp, 'stream-sharded-out'), { inlineLimitBytes: 1 });
  const inline = await convertSafetensors(single, path.join(tmp, 'stream-single-out'));
  assert.ok(existsSync(path.join(streamed, 'model.onnx.data')), 'streamed weights are external');
  assert.not.ok(existsSync(path.join(inline, 'model.onnx.data')));
  const run = async (dir: string) => (await (await ort.InferenceSession.create(path.join(dir, 'model.onnx'))).run(feeds())).logits.data as Float32Array;
  const [a, b] = [await run(streamed), await run(inline)];
  assert.is(a.length, b.length);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  assert.is(diff, 0, 'the same weights in the same graph give the same logits');
  const { diff: vsRef } = await maxDiffVsStoriesOnnx(streamed);
  assert.ok(vsRef < 1e-4, `max |Δlogit| vs stories260K-onnx ${vsRef}`);
});

test('streamed bf16 / fp16 / fp32 conversion (reused buffers, bf16 widened inside the transpose) of a sharded checkpoint = the unsharded one in memory, bit for bit', async () => {
  for (const dtype of ['BF16', 'F16', 'F32'] as const) {
    const sharded = writeStoriesCheckpoint(`bits-sharded-${dtype}`, dtype, { shards: 3, untied: true });
    const single = writeStoriesCheckpoint(`bits-single-${dtype}`, dtype, { untied: true });
    if (!sharded || !single) return;
    const streamed = await convertSafetensors(sharded, path.join(tmp, `bits-sharded-${dtype}-out`), { inlineLimitBytes: 1 });
    const inline = await convertSafetensors(single, path.join(tmp, `bits-single-${dtype}-out`));
    assert.ok(existsSync(path.join(streamed, 'model.onnx.data')), 'streamed weights are external');
    const a = readOnnxModel(path.join(streamed, 'model.onnx'));
    const b = readOnnxModel(path.join(inline, 'model.onnx'));
    try {
      assert.equal([...a.initializers.keys()], [...b.initializers.keys()]);
      for (const [name, t] of a.initializers) {
        const u = b.initializers.get(name)!;
        assert.equal(t.dims, u.dims, `${dtype} ${name} dims`);
        assert.ok(Buffer.from(readTensorBytes(a, t)).equals(Buffer.from(readTensorBytes(b, u))), `${dtype} ${name}: same bytes`);
      }
    } finally {
      a.source.close();
      b.source.close();
    }
    const run = async (dir: string) => (await (await ort.InferenceSession.create(path.join(dir, 'model.onnx'))).run(feeds())).logits.data as Float32Array;
    assert.equal(Array.from(await run(streamed)), Array.from(await run(inline)), `${dtype}: identical logits`);
  }
});

// fp16 keeps 11 significant bits (relative rounding ≤ 2^-11 ≈ 4.9e-4 per weight), bf16 keeps 8
// (≤ 2^-8 ≈ 3.9e-3). Through 5 layers onto logits of magnitude ~20 that is a few 1e-2 for fp16 and
// ~1e-1 for bf16; measured 1.7e-2 (fp16) and 9.3e-2 (bf16), so the bounds leave ~3× headroom,
// while an un-converted or mis-decoded tensor (e.g. halves read as f32) gives errors ≥ 10.
test('fp16 and bf16 checkpoints convert to fp32 within their rounding error', async () => {
  for (const [dtype, tol] of [['F16', 0.05], ['BF16', 0.3]] as const) {
    const dir = writeStoriesCheckpoint(dtype, dtype);
    if (!dir) return;
    const { diff, argmaxAgree } = await maxDiffVsStoriesOnnx(await convertSafetensors(dir, path.join(tmp, `${dtype}-out`)));
    console.log(`  ${dtype}: max |Δlogit| ${diff.toExponential(2)}, argmax agreement ${argmaxAgree}`);
    assert.ok(diff < tol, `${dtype}: max |Δlogit| ${diff} ≥ ${tol}`);
    assert.ok(diff > 0, `${dtype}: rounding must show (else the dtype was not exercised)`);
    assert.ok(argmaxAgree >= 0.9, `${dtype}: argmax agreement ${argmaxAgree}`);
  }
});

test('Qwen2 checkpoint with q/k/v biases matches a float64 reference (rotate_half layout)', async () => {
  const cfg: LlamaConfig = {
    modelType: 'qwen2', hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8, vocabSize: 40,
    maxPositions: 64, rmsNormEps: 1e-6, ropeTheta: 1e6, ropeLayout: 'half', tieWordEmbeddings: true, attentionBias: true, bosId: 1, eosId: 2, padId: 0,
  };
  const r = new SeededRandom(11);
  const lin = (o: number, i: number) => r.normalArray(o * i, 1 / Math.sqrt(i));
  const w: LlamaWeights = {
    embed: r.normalArray(40 * 32),
    layers: Array.from({ length: 2 }, () => ({
      inputNorm: r.normalArray(32, 0.2, 1), q: lin(32, 32), k: lin(16, 32), v: lin(16, 32), o: lin(32, 32),
      qBias: r.normalArray(32, 0.5), kBias: r.normalArray(16, 0.5), vBias: r.normalArray(16, 0.5),
      postNorm: r.normalArray(32, 0.2, 1), gate: lin(48, 32), up: lin(48, 32), down: lin(32, 48),
    })),
    finalNorm: r.normalArray(32, 0.2, 1),
  };
  const dir = path.join(tmp, 'qwen2');
  mkdirSync(dir);
  writeSafetensors(path.join(dir, 'model.safetensors'), hfTensors(cfg, w, false), 'F32');
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfig(cfg, { use_sliding_window: false, sliding_window: 4 })));
  writeFileSync(path.join(dir, 'tokenizer.json'), '{"model":{"type":"BPE","vocab":{},"merges":[]}}');
  const out = await convertSafetensors(dir, path.join(tmp, 'qwen2-out'));
  const ids = [3, 17, 5, 39, 8, 22, 11];
  const res = await (await ort.InferenceSession.create(path.join(out, 'model.onnx'))).run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, 7]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(ids.map(() => 1n)), [1, 7]),
  });
  const ref = referenceForward(cfg, w, ids, ids.map(() => 1));
  const got = res.logits.data as Float32Array;
  let d = 0;
  for (let t = 0; t < 7; t++) for (let v = 0; v < 40; v++) d = Math.max(d, Math.abs(got[t * 40 + v] - ref.logits[t][v]));
  assert.ok(d < 1e-4, `max |Δlogit| ${d}`);
});

test('unsupported or broken checkpoints raise clear errors', async () => {
  const phi = path.join(tmp, 'phi');
  mkdirSync(phi);
  writeFileSync(path.join(phi, 'config.json'), JSON.stringify({ model_type: 'phi3' }));
  writeSafetensors(path.join(phi, 'model.safetensors'), { x: { data: new Float32Array(2), shape: [2] } }, 'F32');
  const expectError = async (dir: string, code: string, needle: string) => {
    try {
      await convertSafetensors(dir, path.join(tmp, 'never'));
      assert.unreachable(dir);
    } catch (e: any) {
      assert.is(e.code, code, e.message);
      assert.match(e.message, needle);
    }
  };
  await expectError(phi, 'UNSUPPORTED', 'phi3');
  const dir = writeStoriesCheckpoint('broken', 'F32');
  if (!dir) return;
  const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 6 }));
  await expectError(dir, 'CONVERT', 'model.layers.5.input_layernorm.weight');
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 170 }));
  await expectError(dir, 'CONVERT', 'model.layers.0.mlp.gate_proj.weight');
  writeFileSync(path.join(dir, 'model.safetensors'), 'not safetensors');
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  await expectError(dir, 'CONVERT', 'model.safetensors');
});

test.run();
