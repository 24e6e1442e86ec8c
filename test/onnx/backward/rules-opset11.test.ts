/**
 * Gradient rules on opset 11 models, where Split/Squeeze/Unsqueeze/ReduceSum take axes and splits
 * as attributes and Softmax/LogSoftmax normalise over every axis from `axis` (default 1); the
 * emitted backward nodes use the same opset's forms (Concat's gradient slices, Clip's masks use
 * Not(Less), Gather's gradient before opset 16 a one-hot MatMul). Each against central differences.
 */
import { test } from 'uvu';
import { check } from './check.ts';

const o11 = { opset: 11 };

check('Split with a split attribute, Concat back (opset 11)', 'Split', (g, x) => {
  const [a, b] = g.node('Split', [x], 2, { axis: 2, split: [2, 4] });
  return { out: g.node('Concat', [g.node('Tanh', [b])[0], g.node('Mul', [a, a])[0]], 1, { axis: 2 })[0], k: 6 };
}, o11);
check('Unsqueeze / Squeeze with axes attributes (opset 11)', 'Squeeze', (g, x) => {
  const [u] = g.node('Unsqueeze', [x], 1, { axes: [1] });
  return { out: g.node('Squeeze', [g.node('Tanh', [u])[0]], 1, { axes: [1] })[0], k: 6 };
}, o11);
check('ReduceSum with an axes attribute, keepdims (opset 11)', 'ReduceSum', (g, x) => {
  const [s] = g.node('ReduceSum', [g.node('Mul', [x, x])[0]], 1, { axes: [2], keepdims: 1 });
  return { out: g.node('Mul', [x, s])[0], k: 6 };
}, o11);
check('Softmax, default axis 1 of a 3-D input (normalises over axes 1 and 2, opset 11)', 'Softmax', (g, x, h) => {
  const [s] = g.node('Softmax', [x]);
  return { out: g.node('Mul', [s, h.rand([6], 3)])[0], k: 6 };
}, o11);
check('LogSoftmax axis 2 (opset 11)', 'LogSoftmax', (g, x) => ({ out: g.node('LogSoftmax', [x], 1, { axis: 2 })[0], k: 6 }), o11);
check('Clip with min and max inputs (opset 11)', 'Clip', (g, x, h) => ({ out: g.node('Clip', [x, h.f32([-0.5], []), h.f32([0.6], [])])[0], k: 6 }), { ...o11, kinks: true });
check('ReduceMean with axes attribute, no keepdims (opset 11)', 'ReduceMean', (g, x) => {
  const [m] = g.node('ReduceMean', [x], 1, { axes: [2], keepdims: 0 });
  const [u] = g.node('Unsqueeze', [m], 1, { axes: [2] });
  return { out: g.node('Sub', [g.node('Mul', [x, x])[0], u])[0], k: 6 };
}, o11);
for (const opset of [11, 15]) {
  // Before opset 16 Gather's gradient is a one-hot MatMul (no ScatterND reduction).
  check(`Gather with repeated and negative indices (opset ${opset})`, 'Gather', (g, x, h) => ({ out: g.node('Gather', [x, h.i64([0, 2, 2, -1])], 1, { axis: 2 })[0], k: 4 }), { opset });
  check(`Gather along T with 2-D indices (opset ${opset})`, 'Gather', (g, x, h) => {
    const [gt] = g.node('Gather', [x, h.i64([0, 1, 1, 3], [2, 2])], 1, { axis: 1 }); // [B,2,2,W]
    return { out: g.node('Reshape', [gt, h.i64([0, 4, 6])])[0], k: 6 };
  }, { opset });
  check(`Gather with a scalar index on axis 0 (opset ${opset})`, 'Gather', (g, x, h) => {
    const [row] = g.node('Gather', [x, h.i64([1], [])], 1, { axis: 0 }); // [T,W]
    return { out: g.node('Mul', [x, row])[0], k: 6 };
  }, { opset });
}

test.run();
