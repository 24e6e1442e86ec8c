import { test } from 'uvu';
import { check } from './check.ts';

check('MatMul activation × weight [W,4]', 'MatMul', (g, x, h) => ({ out: g.node('MatMul', [x, h.rand([6, 4])])[0], k: 4 }));

check('batched MatMul, both operands active (q·kᵀ)', 'MatMul', (g, x, h) => {
  const [q] = g.node('Reshape', [x, h.i64([0, 0, 2, 3])]);
  const [kt] = g.node('Transpose', [q], 1, { perm: [0, 1, 3, 2] });
  const [s] = g.node('MatMul', [q, kt]); // [B,T,2,2]
  return { out: g.node('Reshape', [s, h.btk(4)])[0], k: 4 };
});

check('MatMul with an active operand broadcast over batch ([1,T,2,3] × [B,T,3,2])', 'MatMul', (g, x, h) => {
  const [a] = g.node('ReduceSum', [g.node('Reshape', [x, h.i64([0, 0, 2, 3])])[0], h.i64([0])], 1, { keepdims: 1 });
  const [b] = g.node('Reshape', [g.node('Tanh', [x])[0], h.i64([0, 0, 3, 2])]);
  const [p] = g.node('MatMul', [a, b]);
  return { out: g.node('Reshape', [p, h.btk(4)])[0], k: 4 };
});

check('MatMul with a broadcast weight [1,1,3,4] and a 1-D weight vector', 'MatMul', (g, x, h) => {
  const [r] = g.node('Reshape', [x, h.i64([0, 0, 2, 3])]);
  const [p] = g.node('MatMul', [r, h.rand([1, 1, 3, 4])]); // [B,T,2,4]
  const [v] = g.node('MatMul', [x, h.rand([6])]); // [B,T]
  const [vu] = g.node('Unsqueeze', [v, h.i64([-1])]);
  const [pr] = g.node('Reshape', [p, h.btk(8)]);
  return { out: g.node('Add', [pr, vu])[0], k: 8 };
});

check('MatMul with a 1-D active left operand', 'MatMul', (g, x, h) => {
  // Gather one row per position would need a loop; use x[0,0,:] (1-D) · W[6,4] added back everywhere.
  const [row] = g.node('Gather', [g.node('Gather', [x, h.i64([0], [])], 1, { axis: 0 })[0], h.i64([0], [])], 1, { axis: 0 });
  const [p] = g.node('MatMul', [row, h.rand([6, 4])]); // [4]
  return { out: g.node('Add', [g.node('MatMul', [x, h.rand([6, 4])])[0], p])[0], k: 4 };
});

check('Gemm transB, alpha, beta, bias', 'Gemm', (g, x, h) => {
  const [x2] = g.node('Reshape', [x, h.i64([-1, 6])]);
  const [y] = g.node('Gemm', [x2, h.rand([4, 6]), h.rand([4])], 1, { transB: 1, alpha: { kind: 'float', v: 0.7 }, beta: { kind: 'float', v: 1.3 } });
  return { out: g.node('Reshape', [y, h.btk(4)])[0], k: 4 };
});

check('Gemm transA with an active bias', 'Gemm', (g, x, h) => {
  const [x2] = g.node('Reshape', [x, h.i64([-1, 6])]);
  const [xt] = g.node('Transpose', [x2], 1, { perm: [1, 0] });
  const [c] = g.node('ReduceSum', [x2, h.i64([1])], 1, { keepdims: 1 }); // [BT,1] bias
  const [y] = g.node('Gemm', [xt, h.rand([6, 4]), c], 1, { transA: 1 });
  return { out: g.node('Reshape', [y, h.btk(4)])[0], k: 4 };
});

test.run();
