import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { buildLlamaGraph, transposeMatrix, writeModelFolder, type LlamaWeights } from '../../../onnx/models/llama-graph.ts';
import type { LlamaConfig } from '../../../onnx/models/llama-config.ts';
import { appendGraphOutputs } from '../../../onnx/builder.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { SeededRandom } from '../../../core/random.ts';
import { referenceForward } from './llama-reference.ts';
import { tempDir } from '../../helpers/temp.ts';

function config(over: Partial<LlamaConfig>): LlamaConfig {
  return {
    modelType: 'llama', hiddenSize: 24, intermediateSize: 40, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 6,
    vocabSize: 50, maxPositions: 32, rmsNormEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tieWordEmbeddings: false,
    attentionBias: false, bosId: 1, eosId: 2, padId: 0, ...over,
  };
}

function randomWeights(cfg: LlamaConfig, seed: number): LlamaWeights {
  const r = new SeededRandom(seed);
  const H = cfg.hiddenSize, F = cfg.intermediateSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
  const lin = (o: number, i: number) => r.normalArray(o * i, 1 / Math.sqrt(i));
  const bias = (n: number) => (cfg.attentionBias ? r.normalArray(n, 0.5) : undefined);
  return {
    embed: r.normalArray(cfg.vocabSize * H),
    layers: Array.from({ length: cfg.numLayers }, () => ({
      inputNorm: r.normalArray(H, 0.2, 1), q: lin(q, H), k: lin(kv, H), v: lin(kv, H), o: lin(H, q),
      qBias: bias(q), kBias: bias(kv), vBias: bias(kv),
      postNorm: r.normalArray(H, 0.2, 1), gate: lin(F, H), up: lin(F, H), down: lin(H, F),
    })),
    finalNorm: r.normalArray(H, 0.2, 1),
    lmHead: cfg.tieWordEmbeddings ? undefined : lin(cfg.vocabSize, H),
  };
}

const actName = (i: number) => `/model/layers.${i}/mlp/act_fn/Mul_output_0`;

/** Run the built graph on rows of ids/mask and compare with the float64 reference at real tokens. */
async function compareWithReference(cfg: LlamaConfig, ids: number[][], mask: number[][], seed = 7): Promise<{ logits: number; act: number }> {
  const w = randomWeights(cfg, seed);
  const model = appendGraphOutputs(buildLlamaGraph(cfg, w).toModel({ opset: 17 }), Array.from({ length: cfg.numLayers }, (_, i) => ({ name: actName(i) })));
  const session = await ort.InferenceSession.create(model);
  const B = ids.length, S = ids[0].length;
  const out = await session.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.flat().map(BigInt)), [B, S]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask.flat().map(BigInt)), [B, S]),
  });
  assert.equal(out.logits.dims, [B, S, cfg.vocabSize]);
  const logits = out.logits.data as Float32Array;
  let dl = 0, da = 0;
  for (let b = 0; b < B; b++) {
    const ref = referenceForward(cfg, w, ids[b], mask[b]);
    for (let t = 0; t < S; t++) {
      if (!mask[b][t]) continue; // padded query positions are meaningless by design
      for (let v = 0; v < cfg.vocabSize; v++) dl = Math.max(dl, Math.abs(logits[(b * S + t) * cfg.vocabSize + v] - ref.logits[t][v]));
      for (let i = 0; i < cfg.numLayers; i++) {
        const a = out[actName(i)].data as Float32Array;
        for (let f = 0; f < cfg.intermediateSize; f++) da = Math.max(da, Math.abs(a[(b * S + t) * cfg.intermediateSize + f] - ref.act[i][t][f]));
      }
    }
  }
  for (const x of logits) assert.ok(Number.isFinite(x), 'logits finite, padded positions included');
  return { logits: dl, act: da };
}

const IDS = [[0, 0, 5, 17, 33, 8, 2], [3, 9, 44, 12, 7, 30, 21]];
const MASK = [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]];

test('half RoPE, GQA (2 query heads per kv head), untied head, left padding: logits and act_fn match the float64 reference', async () => {
  const d = await compareWithReference(config({}), IDS, MASK);
  assert.ok(d.logits < 1e-4, `logits diff ${d.logits}`);
  assert.ok(d.act < 1e-4, `act_fn diff ${d.act}`);
});

test('interleaved RoPE, tied embeddings, no GQA', async () => {
  const d = await compareWithReference(config({ ropeLayout: 'interleaved', tieWordEmbeddings: true, numKvHeads: 4 }), IDS, MASK);
  assert.ok(d.logits < 1e-4, `logits diff ${d.logits}`);
});

test('Qwen2-style q/k/v biases and 3 query heads per kv head', async () => {
  const d = await compareWithReference(config({ modelType: 'qwen2', attentionBias: true, numHeads: 6, numKvHeads: 2, headDim: 4 }), IDS, MASK);
  assert.ok(d.logits < 1e-4, `logits diff ${d.logits}`);
});

test('sliding window (Mistral) limits attention to the last N keys', async () => {
  const d = await compareWithReference(config({ modelType: 'mistral', slidingWindow: 3 }), IDS, MASK);
  assert.ok(d.logits < 1e-4, `logits diff ${d.logits}`);
});

test('left padding does not change the logits of real tokens', async () => {
  const cfg = config({});
  const w = randomWeights(cfg, 3);
  const session = await ort.InferenceSession.create(buildLlamaGraph(cfg, w).toModel());
  const run = async (ids: number[], mask: number[]) =>
    (await session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask.map(BigInt)), [1, ids.length]),
    })).logits.data as Float32Array;
  const plain = await run([5, 17, 33], [1, 1, 1]);
  const padded = await run([0, 0, 0, 5, 17, 33], [0, 0, 0, 1, 1, 1]);
  let d = 0;
  for (let i = 0; i < plain.length; i++) d = Math.max(d, Math.abs(plain[i] - padded[3 * cfg.vocabSize + i]));
  assert.ok(d < 1e-5, `diff ${d}`);
});

test('graph structure: Optimum node names, 2-D [in,out] MatMul weights, opset-17 ai.onnx ops only', () => {
  const cfg = config({ attentionBias: true });
  const w = randomWeights(cfg, 1);
  const m = readOnnxModel(buildLlamaGraph(cfg, w).toModel({ opset: 17 }));
  const byName = new Map(m.nodes.map((n) => [n.name, n]));
  for (let i = 0; i < cfg.numLayers; i++) {
    for (const p of ['mlp/gate_proj', 'mlp/up_proj', 'mlp/down_proj', 'self_attn/q_proj', 'self_attn/k_proj', 'self_attn/v_proj', 'self_attn/o_proj']) {
      const n = byName.get(`/model/layers.${i}/${p}/MatMul`);
      assert.ok(n, `node /model/layers.${i}/${p}/MatMul`);
      assert.equal(n!.opType, 'MatMul');
      assert.equal(n!.outputs, [`/model/layers.${i}/${p}/MatMul_output_0`]);
      const weight = m.initializers.get(n!.inputs[1]);
      assert.ok(weight, `B of ${n!.name} is an initializer`);
      assert.equal(weight!.name, `model.layers.${i}.${p.replace('/', '.')}.weight`);
    }
    const sig = byName.get(`/model/layers.${i}/mlp/act_fn/Sigmoid`)!;
    const mul = byName.get(`/model/layers.${i}/mlp/act_fn/Mul`)!;
    assert.equal(sig.inputs, [`/model/layers.${i}/mlp/gate_proj/MatMul_output_0`]);
    assert.equal(mul.inputs, [`/model/layers.${i}/mlp/gate_proj/MatMul_output_0`, sig.outputs[0]]);
    assert.equal(mul.outputs, [actName(i)]);
  }
  const head = byName.get('/lm_head/MatMul')!;
  assert.equal(head.outputs, ['logits']);
  assert.equal(m.initializers.get('lm_head.weight')!.dims, [cfg.hiddenSize, cfg.vocabSize]);
  assert.equal(m.initializers.get('model.layers.0.mlp.gate_proj.weight')!.dims, [cfg.hiddenSize, cfg.intermediateSize]);
  assert.equal(m.initializers.get('model.layers.0.mlp.down_proj.weight')!.dims, [cfg.intermediateSize, cfg.hiddenSize]);
  // Every MatMul with a constant B has a 2-D float B: exactly the linear layers, no helpers.
  const constMatMuls = m.nodes.filter((n) => n.opType === 'MatMul' && m.initializers.has(n.inputs[1]));
  assert.equal(constMatMuls.length, cfg.numLayers * 7 + 1);
  for (const n of constMatMuls) {
    const t = m.initializers.get(n.inputs[1])!;
    assert.equal(t.dims.length, 2);
    assert.equal(t.dataType, 1);
  }
  const allowed = new Set(['MatMul', 'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sqrt', 'ReduceMean', 'Softmax', 'Sigmoid', 'Transpose', 'Reshape', 'Unsqueeze', 'Concat', 'Split', 'Gather', 'Where', 'Cast', 'CumSum', 'Equal', 'LessOrEqual', 'Less', 'And', 'Max']);
  for (const n of m.nodes) {
    assert.ok(allowed.has(n.opType), `op ${n.opType} (${n.name})`);
    assert.equal(n.domain, '');
  }
  assert.equal(m.opsets, [{ domain: '', version: 17 }]);
  assert.equal(m.inputs.map((i) => [i.name, i.elemType, i.dims]), [['input_ids', 7, ['batch_size', 'sequence_length']], ['attention_mask', 7, ['batch_size', 'sequence_length']]]);
  assert.equal(m.outputs.map((o) => [o.name, o.elemType, o.dims]), [['logits', 1, ['batch_size', 'sequence_length', cfg.vocabSize]]]);
  m.source.close();
});

test('transposeMatrix maps W[o][i] to B[i][o]', () => {
  const w = Float32Array.from([1, 2, 3, 4, 5, 6]); // [2 out, 3 in]
  assert.equal(Array.from(transposeMatrix(w, 2, 3)), [1, 4, 2, 5, 3, 6]);
});

test('missing or mis-sized weights are CONVERT errors naming the weight', () => {
  const cfg = config({});
  const w = randomWeights(cfg, 1);
  w.layers[1].up = new Float32Array(5);
  try {
    buildLlamaGraph(cfg, w);
    assert.unreachable();
  } catch (e: any) {
    assert.is(e.code, 'CONVERT');
    assert.match(e.message, 'model.layers.1.mlp.up_proj.weight');
  }
});

test('writeModelFolder writes config/tokenizer/model files and replaces an existing folder whole', async () => {
  const root = tempDir('llama-graph-');
  const dir = path.join(root, 'model');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'stale.txt'), 'old');
  const cfg = config({});
  await writeModelFolder(dir, cfg, randomWeights(cfg, 2), { model: { type: 'BPE' } }, { add_bos_token: true }, { extra_key: 'x' }, { metadata: { k: 'v' } });
  assert.equal(readdirSync(dir).sort(), ['config.json', 'model.onnx', 'tokenizer.json', 'tokenizer_config.json']);
  assert.equal(readdirSync(root), ['model'], 'no temp or stash folder left behind');
  const c = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(
    [c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.vocab_size, c.max_position_embeddings, c.rms_norm_eps, c.rope_theta, c.tie_word_embeddings, c.bos_token_id, c.eos_token_id, c.pad_token_id, c.extra_key],
    [24, 40, 2, 4, 2, 6, 50, 32, 1e-5, 10000, false, 1, 2, 0, 'x'],
  );
  assert.ok(readFileSync(path.join(dir, 'model.onnx')).includes(Buffer.from('k')));
  const s = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  assert.equal(s.outputNames, ['logits']);
  assert.not.ok(existsSync(path.join(dir, 'stale.txt')));
});

test('large models get model.onnx.data (external initializers) and still load and agree', async () => {
  const root = tempDir('llama-graph-ext-');
  const cfg = config({});
  const w = randomWeights(cfg, 4);
  await writeModelFolder(path.join(root, 'inline'), cfg, w, {}, {});
  await writeModelFolder(path.join(root, 'ext'), cfg, w, {}, {}, {}, { inlineLimitBytes: 0 });
  assert.ok(existsSync(path.join(root, 'ext', 'model.onnx.data')));
  assert.ok(statSync(path.join(root, 'ext', 'model.onnx')).size < statSync(path.join(root, 'inline', 'model.onnx')).size / 2);
  const feeds = { input_ids: new ort.Tensor('int64', BigInt64Array.from([1n, 7n, 9n]), [1, 3]), attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n]), [1, 3]) };
  const a = (await (await ort.InferenceSession.create(path.join(root, 'inline', 'model.onnx'))).run(feeds)).logits.data;
  const b = (await (await ort.InferenceSession.create(path.join(root, 'ext', 'model.onnx'))).run(feeds)).logits.data;
  assert.equal(Array.from(b as Float32Array), Array.from(a as Float32Array));
});

test.run();
