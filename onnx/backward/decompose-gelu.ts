/**
 * com.microsoft GELU variants as standard ops (semantics from ONNX Runtime's ContribOperators.md):
 *   FastGelu(X, bias?)  x = X (+ bias); y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
 *   BiasGelu(A, B)      x = A + B;      y = 0.5·x·(1 + erf(x/√2))
 *   QuickGelu(X)        y = x·σ(alpha·x), alpha default 1.702
 */
import { attrFloat, optionalInput } from './rule.ts';
import type { Decomposition } from './decomposition.ts';

const fastGelu: Decomposition = ({ node, e }) => {
  const type = e.meta(node.inputs[0]).type;
  const s = (v: number) => e.scalar(v, type);
  const bias = optionalInput(node, 1);
  const x = bias ? e.op1('Add', [node.inputs[0], bias]) : node.inputs[0];
  const cube = e.op1('Mul', [e.op1('Mul', [x, x]), x]);
  const inner = e.op1('Mul', [s(Math.sqrt(2 / Math.PI)), e.op1('Add', [x, e.op1('Mul', [s(0.044715), cube])])]);
  const half = e.op1('Mul', [s(0.5), x]);
  return [e.op1('Mul', [half, e.op1('Add', [s(1), e.op1('Tanh', [inner])])])];
};

const biasGelu: Decomposition = ({ node, e }) => {
  const type = e.meta(node.inputs[0]).type;
  const s = (v: number) => e.scalar(v, type);
  const x = e.op1('Add', [node.inputs[0], node.inputs[1]]);
  const cdf = e.op1('Add', [s(1), e.op1('Erf', [e.op1('Mul', [x, s(Math.SQRT1_2)])])]);
  return [e.op1('Mul', [e.op1('Mul', [s(0.5), x]), cdf])];
};

const quickGelu: Decomposition = ({ node, e }) => {
  const x = node.inputs[0];
  const alpha = e.scalar(attrFloat(node, 'alpha', 1.702), e.meta(x).type);
  return [e.op1('Mul', [x, e.op1('Sigmoid', [e.op1('Mul', [x, alpha])])])];
};

export const GELU_DECOMPOSITIONS: Record<string, Decomposition> = {
  'com.microsoft:FastGelu': fastGelu,
  'com.microsoft:BiasGelu': biasGelu,
  'com.microsoft:QuickGelu': quickGelu,
};
