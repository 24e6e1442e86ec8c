/** FastGelu, BiasGelu, QuickGelu: decomposition == ORT's kernel, then gradient == central differences. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mulberry32 } from '../../../core/random.ts';
import { float } from '../../../onnx/builder.ts';
import { check } from './check.ts';
import { syntheticModel } from './fd-harness.ts';
import { buildAttributionGraph } from '../../../onnx/backward/graph.ts';
import { DECOMPOSITIONS } from '../../../onnx/backward/decompositions.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { compareWithKernel, randomValues, type OpCase } from './kernel-harness.ts';

const ms = { domains: { 'com.microsoft': 1 } };
const r = mulberry32(5);
const x = (dims: number[], scale = 3) => ({ name: 'x', type: 'float32' as const, dims, data: randomValues(r, dims.reduce((a, b) => a * b, 1), scale) });
const bias = (n: number) => ({ name: 'bias', type: 'float32' as const, dims: [n], data: randomValues(r, n) });

const cases: [string, OpCase][] = [
  ['FastGelu without bias', { op: 'FastGelu', inputs: [x([2, 3, 7])], outputs: 1 }],
  ['FastGelu with bias', { op: 'FastGelu', inputs: [x([3, 5, 16]), bias(16)], outputs: 1 }],
  ['BiasGelu', { op: 'BiasGelu', inputs: [x([2, 4, 9]), bias(9)], outputs: 1 }],
  ['QuickGelu (default alpha)', { op: 'QuickGelu', inputs: [x([2, 3, 8])], outputs: 1 }],
  ['QuickGelu (alpha 1.3)', { op: 'QuickGelu', inputs: [x([4, 6])], attrs: { alpha: float(1.3) }, outputs: 1 }],
];
// Random shapes (rank 1–4, sizes 1–9), with and without bias, random alpha.
for (let k = 0; k < 6; k++) {
  const dims = Array.from({ length: 1 + Math.floor(r() * 4) }, () => 1 + Math.floor(r() * 9));
  const last = dims[dims.length - 1];
  const dimsText = dims.join('×');
  cases.push(
    [`FastGelu random shape #${k} [${dimsText}]${k % 2 ? ' with bias' : ''}`, { op: 'FastGelu', inputs: k % 2 ? [x(dims), bias(last)] : [x(dims)], outputs: 1 }],
    [`BiasGelu random shape #${k} [${dimsText}]`, { op: 'BiasGelu', inputs: [x(dims), bias(last)], outputs: 1 }],
    [`QuickGelu random shape #${k} [${dimsText}]`, { op: 'QuickGelu', inputs: [x(dims)], attrs: { alpha: float(0.5 + 2 * r()) }, outputs: 1 }],
  );
}
for (const [name, c] of cases) {
  test(`${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(c);
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

check('FastGelu with bias', 'FastGelu', (g, a, h) => ({ out: g.node('FastGelu', [g.node('Mul', [a, h.f32([2], [])])[0], h.rand([6])], 1, {}, { domain: 'com.microsoft' })[0], k: 6 }), ms);
check('FastGelu without bias', 'FastGelu', (g, a) => ({ out: g.node('FastGelu', [a], 1, {}, { domain: 'com.microsoft' })[0], k: 6 }), ms);
check('BiasGelu', 'BiasGelu', (g, a, h) => ({ out: g.node('BiasGelu', [a, h.rand([6])], 1, {}, { domain: 'com.microsoft' })[0], k: 6 }), ms);
check('QuickGelu', 'QuickGelu', (g, a) => ({ out: g.node('QuickGelu', [a], 1, { alpha: float(1.5) }, { domain: 'com.microsoft' })[0], k: 6 }), ms);

test('a decomposition that disagrees with the kernel on the probe batch is refused before any run', async () => {
  const original = DECOMPOSITIONS['com.microsoft:QuickGelu'];
  // A deliberately wrong decomposition (alpha 1 instead of the node's 1.5).
  DECOMPOSITIONS['com.microsoft:QuickGelu'] = ({ node, e }) => [e.op1('Mul', [node.inputs[0], e.op1('Sigmoid', [node.inputs[0]])])];
  try {
    const bytes = syntheticModel((g, a) => ({ out: g.node('QuickGelu', [a], 1, { alpha: float(1.5) }, { domain: 'com.microsoft', name: 'my_gelu' })[0], k: 6 }), 7, ms.domains);
    await buildAttributionGraph(readOnnxModel(bytes), { layerTensors: ['act'] });
    assert.unreachable('should refuse');
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.match((e as Error).message, /QuickGelu \(node my_gelu\): its decomposition differs from ONNX Runtime's kernel on the probe batch/);
  } finally {
    DECOMPOSITIONS['com.microsoft:QuickGelu'] = original;
  }
});

test.run();
