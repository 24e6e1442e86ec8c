import { test } from 'uvu';
import { check } from './check.ts';

check('Add, constant broadcast [1,1,W] and active [B,T,1] operand', 'Add', (g, x, h) => {
  const [s] = g.node('ReduceSum', [x, h.i64([-1])], 1, { keepdims: 1 });
  const [a] = g.node('Add', [x, h.rand([1, 1, 6])]);
  const [b] = g.node('Add', [s, a]); // [B,T,1] + [B,T,W]: the first operand's gradient is summed over W
  const [t] = g.node('Tanh', [b]);
  return { out: t, k: 6 };
});

check('Sub both ways with broadcasting', 'Sub', (g, x, h) => {
  const [m] = g.node('ReduceMean', [x], 1, { axes: [-1], keepdims: 1 });
  const [a] = g.node('Sub', [m, x]);
  const [b] = g.node('Sub', [a, h.rand([6])]);
  const [c] = g.node('Sub', [h.rand([1, 6]), g.node('Mul', [b, b])[0]]);
  return { out: c, k: 6 };
});

check('Mul with both operands active, one broadcast over T', 'Mul', (g, x, h) => {
  const [s] = g.node('ReduceSum', [x, h.i64([1])], 1, { keepdims: 1 }); // [B,1,W]
  const [a] = g.node('Mul', [x, s]);
  const [b] = g.node('Mul', [h.rand([1, 1, 6]), a]);
  const [c] = g.node('Mul', [b, g.node('Sigmoid', [x])[0]]);
  return { out: c, k: 6 };
});

check('Div with active numerator and denominator', 'Div', (g, x, h) => {
  const [sq] = g.node('Mul', [x, x]);
  const [m] = g.node('ReduceMean', [sq], 1, { axes: [-1], keepdims: 1 });
  const [den] = g.node('Add', [m, h.f32([1], [])]);
  const [a] = g.node('Div', [x, den]);
  const [b] = g.node('Div', [h.rand([6]), g.node('Add', [x, h.f32([3], [])])[0]]);
  const [c] = g.node('Add', [a, b]);
  return { out: c, k: 6 };
});

check('Pow with constant float exponents 2 and 0.5', 'Pow', (g, x, h) => {
  const [a] = g.node('Pow', [x, h.f32([2], [])]);
  const [b] = g.node('Pow', [g.node('Add', [x, h.f32([2], [])])[0], h.f32([0.5], [])]);
  return { out: g.node('Add', [a, b])[0], k: 6 };
});

check('Sqrt, Reciprocal, Neg, Exp, Log, Abs', 'Sqrt', (g, x, h) => {
  const [p] = g.node('Add', [g.node('Mul', [x, x])[0], h.f32([1], [])]);
  const [s] = g.node('Sqrt', [p]);
  const [r] = g.node('Reciprocal', [p]);
  const [n] = g.node('Neg', [x]);
  const [e] = g.node('Exp', [n]);
  const [l] = g.node('Log', [p]);
  const [ab] = g.node('Abs', [g.node('Add', [x, h.f32([0.05], [])])[0]]);
  const sum = g.node('Sum', [s, r, e, l, ab])[0];
  return { out: sum, k: 6 };
}, { kinks: true });

check('Cast float32 → float64 → float32', 'Cast', (g, x, h) => {
  const [d] = g.node('Cast', [x], 1, { to: 11 });
  const [dd] = g.node('Mul', [d, d]);
  const [f] = g.node('Cast', [dd], 1, { to: 1 });
  return { out: g.node('Add', [f, x])[0], k: 6 };
});

check('Where on both value branches (and a -1e9 mask like attention)', 'Where', (g, x, h) => {
  const cond = g.initializer('cond', { type: 'bool', dims: [6], data: Uint8Array.from([1, 0, 1, 1, 0, 0]) });
  const [w] = g.node('Where', [cond, x, g.node('Neg', [g.node('Mul', [x, x])[0]])[0]]);
  const [m] = g.node('Where', [cond, w, h.f32([-1e9], [])]);
  const [s] = g.node('Softmax', [m], 1, { axis: -1 });
  return { out: g.node('Add', [s, w])[0], k: 6 };
});

check('Clip with min and max', 'Clip', (g, x, h) => {
  const [c] = g.node('Clip', [g.node('Mul', [x, h.f32([1.3], [])])[0], h.f32([-0.6], []), h.f32([0.7], [])]);
  return { out: c, k: 6 };
}, { kinks: true });

test.run();
