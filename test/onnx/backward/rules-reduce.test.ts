import { test } from 'uvu';
import { check } from './check.ts';

check('ReduceMean keepdims=1 (RMSNorm as exported by torch)', 'ReduceMean', (g, x, h) => {
  const [p] = g.node('Pow', [x, h.f32([2], [])]);
  const [m] = g.node('ReduceMean', [p], 1, { axes: [-1], keepdims: 1 });
  const [s] = g.node('Sqrt', [g.node('Add', [m, h.f32([1e-5], [])])[0]]);
  const [r] = g.node('Div', [h.f32([1], []), s]);
  return { out: g.node('Mul', [g.node('Mul', [x, r])[0], h.rand([6])])[0], k: 6 };
});

check('ReduceMean over T with keepdims=0', 'ReduceMean', (g, x, h) => {
  const [m] = g.node('ReduceMean', [g.node('Mul', [x, x])[0]], 1, { axes: [1], keepdims: 0 }); // [B,W]
  const [mu] = g.node('Unsqueeze', [m, h.i64([1])]);
  return { out: g.node('Mul', [x, mu])[0], k: 6 };
});

check('ReduceSum with axes input, keepdims=0, two axes', 'ReduceSum', (g, x, h) => {
  const [s] = g.node('ReduceSum', [g.node('Tanh', [x])[0], h.i64([1, 2])], 1, { keepdims: 0 }); // [B]
  const [su] = g.node('Unsqueeze', [s, h.i64([1, 2])]);
  return { out: g.node('Mul', [x, su])[0], k: 6 };
});

check('ReduceSum over all axes (no axes input)', 'ReduceSum', (g, x) => {
  const [s] = g.node('ReduceSum', [g.node('Mul', [x, x])[0]], 1, { keepdims: 0 }); // scalar
  return { out: g.node('Mul', [x, g.node('Tanh', [s])[0]])[0], k: 6 };
});

test.run();
