import { test } from 'uvu';
import { check } from './check.ts';

check('Sigmoid', 'Sigmoid', (g, x) => ({ out: g.node('Mul', [x, g.node('Sigmoid', [x])[0]])[0], k: 6 }));
check('Tanh', 'Tanh', (g, x, h) => ({ out: g.node('Tanh', [g.node('Mul', [x, h.f32([1.5], [])])[0]])[0], k: 6 }));
check('Erf', 'Erf', (g, x) => ({ out: g.node('Erf', [x])[0], k: 6 }));
check('Relu', 'Relu', (g, x, h) => ({ out: g.node('Relu', [g.node('Add', [x, h.f32([0.1], [])])[0]])[0], k: 6 }), { kinks: true });
check('Gelu (com.microsoft, exact)', 'Gelu', (g, x) => ({ out: g.node('Gelu', [x], 1, {}, { domain: 'com.microsoft' })[0], k: 6 }), { domains: { 'com.microsoft': 1 } });
check('Gelu (ai.onnx opset 20, approximate tanh)', 'Gelu', (g, x) => ({ out: g.node('Gelu', [x], 1, { approximate: 'tanh' })[0], k: 6 }), { opset: 20 });
check('Gelu (ai.onnx opset 20, exact)', 'Gelu', (g, x) => ({ out: g.node('Gelu', [x])[0], k: 6 }), { opset: 20 });
check('Softmax over the last axis', 'Softmax', (g, x, h) => {
  const [s] = g.node('Softmax', [g.node('Mul', [x, h.f32([2], [])])[0]], 1, { axis: -1 });
  return { out: g.node('Mul', [s, h.rand([6], 3)])[0], k: 6 };
});
check('Softmax over the sequence axis (axis 1)', 'Softmax', (g, x) => {
  const [s] = g.node('Softmax', [x], 1, { axis: 1 });
  return { out: g.node('Mul', [s, x])[0], k: 6 };
});
check('LogSoftmax over axis -1 and axis 1', 'LogSoftmax', (g, x) => {
  const [a] = g.node('LogSoftmax', [x], 1, { axis: -1 });
  const [b] = g.node('LogSoftmax', [x], 1, { axis: 1 });
  return { out: g.node('Add', [a, b])[0], k: 6 };
});

test.run();
