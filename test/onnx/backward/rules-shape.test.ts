import { test } from 'uvu';
import { check } from './check.ts';

check('Transpose there and back around a Softmax over T', 'Transpose', (g, x) => {
  const [t] = g.node('Transpose', [x], 1, { perm: [0, 2, 1] });
  const [s] = g.node('Softmax', [t], 1, { axis: -1 });
  return { out: g.node('Mul', [g.node('Transpose', [s], 1, { perm: [0, 2, 1] })[0], x])[0], k: 6 };
});

check('Unsqueeze, broadcast Mul, Reshape, Squeeze', 'Reshape', (g, x, h) => {
  const [u] = g.node('Unsqueeze', [x, h.i64([2])]); // [B,T,1,W]
  const [m] = g.node('Mul', [u, h.rand([1, 1, 2, 1])]); // [B,T,2,W]
  const [r] = g.node('Reshape', [m, h.btk(12)]);
  const [s] = g.node('ReduceSum', [x, h.i64([-1])], 1, { keepdims: 1 });
  const [sq] = g.node('Squeeze', [s, h.i64([-1])]);
  const [back] = g.node('Unsqueeze', [sq, h.i64([-1])]);
  return { out: g.node('Mul', [r, g.node('Tanh', [back])[0]])[0], k: 12 };
});

check('Concat along W (with a constant part) and along T', 'Concat', (g, x, h) => {
  const [c] = g.node('Expand', [h.rand([1, 1, 2]), h.btk(2)]);
  const [a] = g.node('Concat', [x, g.node('Mul', [x, x])[0], c], 1, { axis: -1 }); // [B,T,14]
  const [b] = g.node('Concat', [x, g.node('Tanh', [x])[0]], 1, { axis: 1 }); // [B,2T,W]
  const [br] = g.node('Reshape', [b, h.btk(12)]);
  return { out: g.node('Concat', [a, br], 1, { axis: 2 })[0], k: 26 };
});

check('Split with both parts used', 'Split', (g, x, h) => {
  const [p, q] = g.node('Split', [x, h.i64([2, 4])], 2, { axis: -1 });
  return { out: g.node('Concat', [g.node('Mul', [q, h.rand([4])])[0], g.node('Tanh', [p])[0]], 1, { axis: -1 })[0], k: 6 };
});

check('Split with one part unused (zero gradient filled in)', 'Split', (g, x, h) => {
  const outs = g.node('Split', [x, h.i64([3, 3])], 2, { axis: 2 });
  return { out: g.node('Mul', [outs[1], outs[1]])[0], k: 3 };
});

check('Slice on W with a start offset', 'Slice', (g, x, h) => ({ out: g.node('Slice', [x, h.i64([1]), h.i64([5]), h.i64([2])])[0], k: 4 }));

check('Slice reversing T (step -1, clamped bounds)', 'Slice', (g, x, h) => {
  const [r] = g.node('Slice', [x, h.i64([-1]), h.i64([-1000]), h.i64([1]), h.i64([-1])]);
  return { out: g.node('Mul', [r, g.node('Tanh', [x])[0]])[0], k: 6 };
});

check('Slice on two axes with step 2 on T and W, plus a first-row slice concatenated back', 'Slice', (g, x, h) => {
  const [s] = g.node('Slice', [x, h.i64([0, 1, 1]), h.i64([1000, 1000, 6]), h.i64([0, 1, 2]), h.i64([1, 1, 2])]); // [B,T-1,3]
  const [z] = g.node('Slice', [x, h.i64([0]), h.i64([1]), h.i64([1])]); // [B,1,W]
  const [z3] = g.node('Slice', [z, h.i64([0]), h.i64([3]), h.i64([2])]);
  return { out: g.node('Concat', [z3, s], 1, { axis: 1 })[0], k: 3 };
});

check('Gather on W with repeated and negative indices', 'Gather', (g, x, h) => ({ out: g.node('Gather', [x, h.i64([0, 2, 2, -1])], 1, { axis: 2 })[0], k: 4 }));

check('Gather with a scalar index (RoPE pair pick) on a rank-5 tensor', 'Gather', (g, x, h) => {
  const [r] = g.node('Reshape', [x, h.i64([0, 0, 1, 3, 2])]);
  const [e] = g.node('Gather', [r, h.i64([0], [])], 1, { axis: 4 }); // [B,T,1,3]
  const [o] = g.node('Gather', [r, h.i64([1], [])], 1, { axis: 4 });
  const [m] = g.node('Sub', [g.node('Mul', [e, h.rand([3])])[0], g.node('Mul', [o, h.rand([3])])[0]]);
  return { out: g.node('Reshape', [m, h.btk(3)])[0], k: 3 };
});

check('Gather along T (axis 1) with 2-D indices', 'Gather', (g, x, h) => {
  const [gt] = g.node('Gather', [x, h.i64([0, 1, 1, 3], [2, 2])], 1, { axis: 1 }); // [B,2,2,W]
  const [s] = g.node('ReduceSum', [gt, h.i64([1, 2])], 1, { keepdims: 0 }); // [B,W]
  const [su] = g.node('Unsqueeze', [s, h.i64([1])]);
  return { out: g.node('Mul', [x, su])[0], k: 6 };
});

check('Tile along T and W (each copy weighted differently)', 'Tile', (g, x, h) => {
  const [t] = g.node('Tile', [x, h.i64([1, 2, 3])]); // [B,2T,3W]
  const [r] = g.node('Reshape', [t, h.btk(36)]);
  return { out: g.node('Mul', [r, h.rand([36])])[0], k: 36 };
});

check('Expand of [B,T,1] and of an unsqueezed [B,T,1,W] (GQA repeat)', 'Expand', (g, x, h) => {
  const [s] = g.node('ReduceSum', [x, h.i64([-1])], 1, { keepdims: 1 });
  const [e] = g.node('Expand', [s, h.btk(4)]);
  const [u] = g.node('Unsqueeze', [x, h.i64([2])]);
  const [e2] = g.node('Expand', [u, h.i64([1, 1, 3, 1])]); // [B,T,3,W]
  const [r] = g.node('Reshape', [e2, h.btk(18)]);
  return { out: g.node('Concat', [g.node('Tanh', [e])[0], g.node('Mul', [r, h.rand([18])])[0]], 1, { axis: -1 })[0], k: 22 };
});

test.run();
