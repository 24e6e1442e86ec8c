import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { readOnnxModel } from '../../onnx/model-reader.ts';
import { findActivationSites, resolveLayers } from '../../onnx/capture.ts';
import { appendGraphOutputs, GraphBuilder, tensor } from '../../onnx/builder.ts';
import { sharedPath } from '../helpers/shared.ts';

test('stories260K: first/middle/last resolve to the act_fn Mul outputs of layers 0, 2, 4 (width 172)', () => {
  const p = sharedPath('models/stories260K-onnx/model.onnx', 'capture on stories260K');
  if (!p) return;
  const sites = resolveLayers(readOnnxModel(p), ['first', 'middle', 'last']);
  assert.equal(sites.map((s) => [s.layer, s.tensor, s.width]), [0, 2, 4].map((i) => [i, `/model/layers.${i}/mlp/act_fn/Mul_output_0`, 172]));
});

test('tiny-random-llama-fp16 (genai builder names): two layers of width 64; layer 5 is a clear error', () => {
  const p = sharedPath('models/tiny-random-llama-fp16/model.onnx', 'capture on tiny-random-llama-fp16');
  if (!p) return;
  const m = readOnnxModel(p);
  assert.equal(resolveLayers(m, ['first', 'last']).map((s) => [s.layer, s.tensor, s.width]), [
    [0, '/model/layers.0/mlp/act_fn/Mul/output_0', 64],
    [1, '/model/layers.1/mlp/act_fn/Mul/output_0', 64],
  ]);
  assert.throws(() => resolveLayers(m, [5]), /layer 5 does not exist: the model has 2 decoder layers/);
});

test('tiny-random-gpt2 (fused FastGelu): five layers numbered in graph order, width 128', async () => {
  const p = sharedPath('models/tiny-random-gpt2-fp32/past.onnx', 'capture on tiny-random-gpt2');
  if (!p) return;
  const m = readOnnxModel(p);
  const sites = findActivationSites(m);
  assert.equal(sites.map((s) => [s.layer, s.opType, s.width]), [0, 1, 2, 3, 4].map((i) => [i, 'FastGelu', 128]));
  // The width found from the graph equals the captured tensor's real last dim.
  const s = await ort.InferenceSession.create(appendGraphOutputs(readFileSync(p), [{ name: sites[2].tensor }]));
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int32', Int32Array.from([5, 6, 7]), [1, 3]),
    position_ids: new ort.Tensor('int32', Int32Array.from([0, 1, 2]), [1, 3]),
    attention_mask: new ort.Tensor('int32', Int32Array.from([1, 1, 1]), [1, 3]),
  };
  for (let i = 0; i < 5; i++) feeds[`past_${i}`] = new ort.Tensor('float32', new Float32Array(0), [2, 1, 4, 0, 8]);
  const r = await s.run(feeds);
  assert.equal(r[sites[2].tensor].dims, [1, 3, 128]);
});

test('structural SiLU is found without names; explicit tensor names are accepted', () => {
  const g = new GraphBuilder('mlp');
  g.input('x', 'float', ['n', 4]);
  g.initializer('wg', tensor('float', [4, 6], new Float32Array(24)));
  g.initializer('wu', tensor('float', [4, 6], new Float32Array(24)));
  g.initializer('wd', tensor('float', [6, 4], new Float32Array(24)));
  g.node('MatMul', ['x', 'wg'], ['g']);
  g.node('Sigmoid', ['g'], ['s']);
  g.node('Mul', ['g', 's'], ['act']);
  g.node('MatMul', ['x', 'wu'], ['u']);
  g.node('Mul', ['act', 'u'], ['h']);
  g.node('MatMul', ['h', 'wd'], ['y']);
  g.output('y', 'float', ['n', 4]);
  const m = readOnnxModel(g.toModel());
  assert.equal(findActivationSites(m).map((s) => [s.layer, s.tensor, s.how, s.width]), [[0, 'act', 'structure', 6]]);
  assert.equal(resolveLayers(m, ['u']).map((s) => [s.tensor, s.how]), [['u', 'explicit']]);
  assert.throws(() => resolveLayers(m, ['nope']), /no tensor named "nope"/);
});

test.run();
