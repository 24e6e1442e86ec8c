/** Gradient rules of activations and (log-)softmax. */
import { normAxis } from './emitter.ts';
import { attrInt, attrFloat, gradError, onlyGrad, type GradRule, type RuleContext } from './rule.ts';

// σ' = σ(1-σ), from the output.
const sigmoid: GradRule = (c) => {
  const g = onlyGrad(c);
  const y = c.node.outputs[0];
  const one = c.e.scalar(1, c.e.meta(y).type);
  return [c.e.op1('Mul', [g, c.e.op1('Mul', [y, c.e.op1('Sub', [one, y])])])];
};

const tanh: GradRule = (c) => {
  const g = onlyGrad(c);
  const y = c.node.outputs[0];
  const one = c.e.scalar(1, c.e.meta(y).type);
  return [c.e.op1('Mul', [g, c.e.op1('Sub', [one, c.e.op1('Mul', [y, y])])])];
};

// erf'(x) = 2/√π · exp(-x²)
const erf: GradRule = (c) => {
  const g = onlyGrad(c);
  const x = c.node.inputs[0];
  const t = c.e.meta(x).type;
  const e2 = c.e.op1('Exp', [c.e.op1('Neg', [c.e.op1('Mul', [x, x])])]);
  return [c.e.op1('Mul', [g, c.e.op1('Mul', [e2, c.e.scalar(2 / Math.sqrt(Math.PI), t)])])];
};

const relu: GradRule = (c) => {
  const g = onlyGrad(c);
  const x = c.node.inputs[0];
  const zero = c.e.scalar(0, c.e.meta(x).type);
  return [c.e.op1('Where', [c.e.op1('Greater', [x, zero]), g, zero])];
};

// Exact GELU x·Φ(x): d/dx = Φ(x) + x·φ(x).
function geluExact(c: RuleContext): string {
  const g = onlyGrad(c);
  const x = c.node.inputs[0];
  const t = c.e.meta(x).type;
  const s = (v: number) => c.e.scalar(v, t);
  const cdf = c.e.op1('Mul', [s(0.5), c.e.op1('Add', [s(1), c.e.op1('Erf', [c.e.op1('Mul', [x, s(Math.SQRT1_2)])])])]);
  const pdf = c.e.op1('Mul', [s(1 / Math.sqrt(2 * Math.PI)), c.e.op1('Exp', [c.e.op1('Mul', [s(-0.5), c.e.op1('Mul', [x, x])])])]);
  return c.e.op1('Mul', [g, c.e.op1('Add', [cdf, c.e.op1('Mul', [x, pdf])])]);
}

// Tanh GELU 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³):
// d/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(u).
function geluTanh(c: RuleContext): string {
  const g = onlyGrad(c);
  const x = c.node.inputs[0];
  const s = (v: number) => c.e.scalar(v, c.e.meta(x).type);
  const op = (name: string, ...inputs: string[]) => c.e.op1(name, inputs);
  const x2 = op('Mul', x, x);
  const k = Math.sqrt(2 / Math.PI);
  const t = op('Tanh', op('Mul', s(k), op('Add', x, op('Mul', s(0.044715), op('Mul', x2, x)))));
  const du = op('Mul', s(k), op('Add', s(1), op('Mul', s(3 * 0.044715), x2)));
  const left = op('Mul', s(0.5), op('Add', s(1), t));
  const right = op('Mul', op('Mul', s(0.5), x), op('Mul', op('Sub', s(1), op('Mul', t, t)), du));
  return op('Mul', g, op('Add', left, right));
}

const gelu: GradRule = (c) => {
  const approx = c.node.attributes.approximate;
  const mode = approx?.type === 'string' ? approx.value : 'none';
  if (mode === 'tanh') return [geluTanh(c)];
  if (mode !== 'none') throw gradError(c.node, `approximate="${mode}" is not supported`);
  return [geluExact(c)];
};

// From opset 13 a single axis (default -1); before, the input is flattened to 2-D at `axis`
// (default 1) and normalised over every axis from there on.
function softmaxAxis(c: RuleContext): number[] {
  const r = c.e.rank(c.node.inputs[0]);
  const axis = normAxis(attrInt(c.node, 'axis', c.e.opset >= 13 ? -1 : 1), r);
  if (c.e.opset >= 13) return [axis];
  return Array.from({ length: r - axis }, (_, i) => axis + i);
}

// dx = y ⊙ (g − Σ g⊙y)
const softmax: GradRule = (c) => {
  const g = onlyGrad(c);
  const y = c.node.outputs[0];
  const dot = c.e.reduceSum(c.e.op1('Mul', [g, y]), softmaxAxis(c), true);
  return [c.e.op1('Mul', [y, c.e.op1('Sub', [g, dot])])];
};

// dx = g − softmax ⊙ Σ g, softmax = exp(y)
const logSoftmax: GradRule = (c) => {
  const g = onlyGrad(c);
  const y = c.node.outputs[0];
  const sum = c.e.reduceSum(g, softmaxAxis(c), true);
  return [c.e.op1('Sub', [g, c.e.op1('Mul', [c.e.op1('Exp', [y]), sum])])];
};

// LeakyRelu(alpha): slope alpha below 0.
const leakyRelu: GradRule = (c) => {
  const g = onlyGrad(c);
  const x = c.node.inputs[0];
  const t = c.e.meta(x).type;
  const slope = c.e.op1('Where', [c.e.op1('Greater', [x, c.e.scalar(0, t)]), c.e.scalar(1, t), c.e.scalar(attrFloat(c.node, 'alpha', 0.01), t)]);
  return [c.e.op1('Mul', [g, slope])];
};

export const ACTIVATION_RULES: Record<string, GradRule> = {
  Sigmoid: sigmoid,
  Tanh: tanh,
  Erf: erf,
  Relu: relu,
  LeakyRelu: leakyRelu,
  Gelu: gelu,
  'com.microsoft:Gelu': (c) => [geluExact(c)],
  Softmax: softmax,
  LogSoftmax: logSoftmax,
};
