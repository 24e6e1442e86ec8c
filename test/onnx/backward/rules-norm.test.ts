import { test } from 'uvu';
import { check } from './check.ts';

check('LayerNormalization (opset 17) with scale and bias', 'LayerNormalization', (g, x, h) => {
  const [y] = g.node('LayerNormalization', [g.node('Mul', [x, h.f32([2], [])])[0], h.rand([6]), h.rand([6])], 1, { axis: -1, epsilon: { kind: 'float', v: 1e-5 } });
  return { out: g.node('Mul', [y, h.rand([6])])[0], k: 6 };
});

check('SimplifiedLayerNormalization (RMSNorm)', 'SimplifiedLayerNormalization', (g, x, h) => {
  const [y] = g.node('SimplifiedLayerNormalization', [x, h.rand([6])], 1, { axis: -1, epsilon: { kind: 'float', v: 1e-5 } });
  return { out: y, k: 6 };
});

check('SkipSimplifiedLayerNormalization with active input and skip, sum output used', 'SkipSimplifiedLayerNormalization', (g, x, h) => {
  const outs = g.node('SkipSimplifiedLayerNormalization', [x, g.node('Tanh', [x])[0], h.rand([6])], 4, { epsilon: { kind: 'float', v: 1e-5 } }, { domain: 'com.microsoft' });
  return { out: g.node('Add', [outs[0], g.node('Mul', [outs[3], h.f32([0.3], [])])[0]])[0], k: 6 };
}, { domains: { 'com.microsoft': 1 } });

check('SkipLayerNormalization with beta and bias', 'SkipLayerNormalization', (g, x, h) => {
  const [y] = g.node('SkipLayerNormalization', [x, g.node('Mul', [x, x])[0], h.rand([6]), h.rand([6]), h.rand([6])], 1, { epsilon: { kind: 'float', v: 1e-5 } }, { domain: 'com.microsoft' });
  return { out: y, k: 6 };
}, { domains: { 'com.microsoft': 1 } });

test.run();
