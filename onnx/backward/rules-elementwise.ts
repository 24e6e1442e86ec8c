/**
 * Gradient rules of element-wise ops with numpy broadcasting. Every input gradient is computed at
 * the output's shape and then summed back to the input's shape (GradEmitter.unbroadcast).
 */
import { broadcastShapes } from './emitter.ts';
import { gradError, onlyGrad, onnxTypeCode, optionalInput, type GradRule } from './rule.ts';

const add: GradRule = (c) => {
  const g = onlyGrad(c);
  const ys = c.e.meta(c.node.outputs[0]).shape;
  return c.node.inputs.map((x, i) => (c.needs[i] ? c.e.unbroadcast(g, ys, x) : null));
};

const sub: GradRule = (c) => {
  const g = onlyGrad(c);
  const [a, b] = c.node.inputs;
  const ys = c.e.meta(c.node.outputs[0]).shape;
  return [c.needs[0] ? c.e.unbroadcast(g, ys, a) : null, c.needs[1] ? c.e.unbroadcast(c.e.op1('Neg', [g]), ys, b) : null];
};

const mul: GradRule = (c) => {
  const g = onlyGrad(c);
  const [a, b] = c.node.inputs;
  const ys = c.e.meta(c.node.outputs[0]).shape;
  return [
    c.needs[0] ? c.e.unbroadcast(c.e.op1('Mul', [g, b]), ys, a) : null,
    c.needs[1] ? c.e.unbroadcast(c.e.op1('Mul', [g, a]), ys, b) : null,
  ];
};

// y = a / b: dy/da = 1/b, dy/db = -y/b.
const div: GradRule = (c) => {
  const g = onlyGrad(c);
  const [a, b] = c.node.inputs;
  const y = c.node.outputs[0];
  const ys = c.e.meta(y).shape;
  return [
    c.needs[0] ? c.e.unbroadcast(c.e.op1('Div', [g, b]), ys, a) : null,
    c.needs[1] ? c.e.unbroadcast(c.e.op1('Neg', [c.e.op1('Div', [c.e.op1('Mul', [g, y]), b])]), ys, b) : null,
  ];
};

// y = a^p with p not depending on the override: dy/da = p·a^(p-1). p may be an integer tensor.
const pow: GradRule = (c) => {
  if (c.needs[1]) throw gradError(c.node, 'gradient with respect to the exponent is not supported');
  const g = onlyGrad(c);
  const [a, p] = c.node.inputs;
  const type = c.e.meta(a).type;
  const pf = c.e.meta(p).type === type ? p : c.e.op1('Cast', [p], { to: onnxTypeCode(type) });
  const deriv = c.e.op1('Mul', [pf, c.e.op1('Pow', [a, c.e.op1('Sub', [pf, c.e.scalar(1, type)])])]);
  const ys = c.e.meta(c.node.outputs[0]).shape;
  return [c.e.unbroadcast(c.e.op1('Mul', [g, deriv]), broadcastShapes(ys, c.e.meta(p).shape), a), null];
};

const sqrt: GradRule = (c) => {
  const g = onlyGrad(c);
  const y = c.node.outputs[0];
  return [c.e.op1('Div', [c.e.op1('Mul', [g, c.e.scalar(0.5, c.e.meta(y).type)]), y])];
};

const reciprocal: GradRule = (c) => {
  const g = onlyGrad(c);
  const y = c.node.outputs[0];
  return [c.e.op1('Neg', [c.e.op1('Mul', [g, c.e.op1('Mul', [y, y])])])];
};

const neg: GradRule = (c) => [c.e.op1('Neg', [onlyGrad(c)])];
const identity: GradRule = (c) => [onlyGrad(c)];
const exp: GradRule = (c) => [c.e.op1('Mul', [onlyGrad(c), c.node.outputs[0]])];
const log: GradRule = (c) => [c.e.op1('Div', [onlyGrad(c), c.node.inputs[0]])];
const abs: GradRule = (c) => [c.e.op1('Mul', [onlyGrad(c), c.e.op1('Sign', [c.node.inputs[0]])])];

// Cast between float types carries the gradient back in the input's type; integer paths never
// reach here (the graph treats non-float tensors as constants).
const cast: GradRule = (c) => {
  const x = c.node.inputs[0];
  const g = onlyGrad(c);
  const xt = c.e.meta(x).type;
  return [xt === c.e.meta(c.node.outputs[0]).type ? g : c.e.op1('Cast', [g], { to: onnxTypeCode(xt) })];
};

// Where(cond, X, Y): the gradient flows to the branch that was selected.
const where: GradRule = (c) => {
  if (c.needs[0]) throw gradError(c.node, 'the condition cannot carry a gradient');
  const g = onlyGrad(c);
  const [cond, x, y] = c.node.inputs;
  const out = c.node.outputs[0];
  const ys = c.e.meta(out).shape;
  const zero = c.e.scalar(0, c.e.meta(out).type);
  return [
    null,
    c.needs[1] ? c.e.unbroadcast(c.e.op1('Where', [cond, g, zero]), ys, x) : null,
    c.needs[2] ? c.e.unbroadcast(c.e.op1('Where', [cond, zero, g]), ys, y) : null,
  ];
};

// Clip(x, min?, max?): gradient passes where min <= x <= max (bounds are constants here).
const clip: GradRule = (c) => {
  if (c.needs[1] || c.needs[2]) throw gradError(c.node, 'gradient with respect to the bounds is not supported');
  const g = onlyGrad(c);
  const x = c.node.inputs[0];
  const lo = optionalInput(c.node, 1);
  const hi = optionalInput(c.node, 2);
  let mask: string | null = null;
  // GreaterOrEqual / LessOrEqual exist from opset 12; Not(Less) / Not(Greater) before.
  const ge = (a: string, b: string) => (c.e.opset >= 12 ? c.e.op1('GreaterOrEqual', [a, b]) : c.e.op1('Not', [c.e.op1('Less', [a, b])]));
  if (lo) mask = ge(x, lo);
  if (hi) {
    const m = ge(hi, x);
    mask = mask ? c.e.op1('And', [mask, m]) : m;
  }
  if (!mask) return [g, null, null];
  return [c.e.op1('Where', [mask, g, c.e.scalar(0, c.e.meta(x).type)]), null, null];
};

export const ELEMENTWISE_RULES: Record<string, GradRule> = {
  Add: add,
  Sum: add,
  Sub: sub,
  Mul: mul,
  Div: div,
  Pow: pow,
  Sqrt: sqrt,
  Reciprocal: reciprocal,
  Neg: neg,
  Identity: identity,
  Dropout: identity, // inference mode: the identity (mask output carries no gradient)
  Exp: exp,
  Log: log,
  Abs: abs,
  Cast: cast,
  Where: where,
  Clip: clip,
};
