import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { GraphBuilder, appendGraphOutputs, tensor, float } from '../../onnx/builder.ts';
import { readOnnxModel, readTensorFloat32 } from '../../onnx/model-reader.ts';
import { sharedPath } from '../helpers/shared.ts';
import { tempDir } from '../helpers/temp.ts';

function gramGraph(d: number): Uint8Array {
  const g = new GraphBuilder('gram');
  g.input('X', 'float', ['n', d]);
  g.node('ReduceMean', ['X'], ['mean'], { axes: [0], keepdims: 1 });
  g.node('Sub', ['X', 'mean'], ['xc']);
  g.node('Transpose', ['xc'], ['xt'], { perm: [1, 0] });
  g.node('MatMul', ['xt', 'xc'], ['G']);
  g.output('mean', 'float', [1, d]);
  g.output('G', 'float', [d, d]);
  return g.toModel({ opset: 17 });
}

test('a built graph runs in ORT and equals the same computation in JS', async () => {
  const n = 7, d = 5;
  const x = Float32Array.from({ length: n * d }, (_, i) => Math.sin(i * 1.7) * 3);
  const s = await ort.InferenceSession.create(gramGraph(d));
  const r = await s.run({ X: new ort.Tensor('float32', x, [n, d]) });
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j] / n;
  for (let a = 0; a < d; a++)
    for (let b = 0; b < d; b++) {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += (x[i * d + a] - mean[a]) * (x[i * d + b] - mean[b]);
      assert.ok(Math.abs((r.G.data as Float32Array)[a * d + b] - acc) < 1e-4, `G[${a},${b}]`);
    }
});

test('the reader sees what the builder wrote: nodes, attributes, initializers, inputs', () => {
  const g = new GraphBuilder('t');
  g.input('x', 'float', ['batch', 3]);
  const w = g.initializer('w', tensor('float', [3, 2], Float32Array.from([1, 2, 3, 4, 5, 6])));
  g.node('MatMul', ['x', w], ['y'], {}, { name: '/model/layers.0/mlp/gate_proj/MatMul' });
  g.node('LeakyRelu', ['y'], ['z'], { alpha: float(0.25) }, { name: 'act' });
  g.output('z', 'float', ['batch', 2]);
  const m = readOnnxModel(g.toModel({ opset: 17, domains: { 'com.microsoft': 1 } }));
  assert.equal(m.nodes.map((n) => n.name), ['/model/layers.0/mlp/gate_proj/MatMul', 'act']);
  assert.equal(m.nodes[1].attributes.alpha, { type: 'float', value: 0.25 });
  assert.equal(m.inputs[0], { name: 'x', elemType: 1, dims: ['batch', 3] });
  assert.equal(Array.from(readTensorFloat32(m, m.initializers.get('w')!)), [1, 2, 3, 4, 5, 6]);
  assert.equal(m.opsets, [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }]);
});

test('external data written by the builder loads in ORT and reads back', async () => {
  const dir = tempDir('ql-ext-');
  const g = new GraphBuilder('ext');
  g.input('x', 'float', [1, 300]);
  const wData = Float32Array.from({ length: 300 * 2 }, (_, i) => (i % 7) - 3);
  g.initializer('w', tensor('float', [300, 2], wData));
  g.node('MatMul', ['x', 'w'], ['y']);
  g.output('y', 'float', [1, 2]);
  await g.writeWithExternalData(path.join(dir, 'm.onnx'), path.join(dir, 'm.onnx.data'), { threshold: 64 });
  const m = readOnnxModel(path.join(dir, 'm.onnx'));
  assert.is(m.initializers.get('w')!.location.kind, 'external');
  assert.equal(Array.from(readTensorFloat32(m, m.initializers.get('w')!)), Array.from(wData));
  const s = await ort.InferenceSession.create(path.join(dir, 'm.onnx'));
  const x = new Float32Array(300).fill(1);
  const y = (await s.run({ x: new ort.Tensor('float32', x, [1, 300]) })).y.data as Float32Array;
  let c0 = 0, c1 = 0;
  for (let i = 0; i < 300; i++) { c0 += wData[i * 2]; c1 += wData[i * 2 + 1]; }
  assert.equal(Array.from(y), [c0, c1]);
});

test('appended graph outputs expose the MLP activation of stories260K without re-encoding', async () => {
  const p = sharedPath('models/stories260K-onnx/model.onnx', 'appendGraphOutputs on stories260K');
  if (!p) return;
  const bytes = readFileSync(p);
  const gate = '/model/layers.2/mlp/gate_proj/MatMul_output_0';
  const act = '/model/layers.2/mlp/act_fn/Mul_output_0';
  const aug = appendGraphOutputs(bytes, [{ name: gate }, { name: act }]);
  // The original bytes are an untouched prefix: nothing is decoded or rewritten.
  assert.ok(Buffer.from(aug.subarray(0, bytes.length)).equals(bytes));
  const s = await ort.InferenceSession.create(aug);
  const ids = BigInt64Array.from([1n, 403n, 407n]);
  const r = await s.run({ input_ids: new ort.Tensor('int64', ids, [1, 3]), attention_mask: new ort.Tensor('int64', new BigInt64Array(3).fill(1n), [1, 3]) });
  assert.equal(r[act].dims, [1, 3, 172]);
  const g = r[gate].data as Float32Array, a = r[act].data as Float32Array;
  // Independent check: the act_fn output is SiLU of the gate projection.
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - g[i] / (1 + Math.exp(-g[i]))) < 1e-5);
  const m = readOnnxModel(aug);
  assert.equal(m.outputs.map((o) => o.name), ['logits', gate, act]);
});

test('a corrupt model gives a one-line MODEL error', () => {
  let msg = '';
  try {
    readOnnxModel(Uint8Array.from([0x3a, 0xff, 0xff, 0x01, 0x02]));
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.match(msg, /corrupt ONNX model|not an ONNX model/);
  assert.not.match(msg, /\n/);
});

test.run();
