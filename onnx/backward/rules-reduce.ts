/**
 * ReduceSum / ReduceMean: the gradient is the output gradient broadcast back over the reduced
 * axes (divided by the number of reduced elements for the mean, taken from Size() at run time).
 */
import { normAxis } from './emitter.ts';
import { attrInt, attrInts, gradError, onlyGrad, optionalInput, onnxTypeCode, type GradRule, type RuleContext } from './rule.ts';

/** Reduced axes (sorted, non-negative) or null for "all axes"; 'noop' for the identity case. */
function reducedAxes(c: RuleContext): number[] | null | 'noop' {
  const x = c.node.inputs[0];
  const r = c.e.rank(x);
  let axes = attrInts(c.node, 'axes');
  const axesInput = optionalInput(c.node, 1);
  if (axesInput) {
    axes = c.constInts(axesInput);
    if (!axes) throw gradError(c.node, 'axes must be a constant');
  }
  if (!axes || axes.length === 0) {
    if (attrInt(c.node, 'noop_with_empty_axes', 0) === 1) return 'noop';
    return null;
  }
  return axes.map((a) => normAxis(a, r)).sort((p, q) => p - q);
}

function spreadBack(c: RuleContext): string {
  const g = onlyGrad(c);
  const x = c.node.inputs[0];
  const axes = reducedAxes(c);
  if (axes === 'noop') return g;
  const all = axes ?? Array.from({ length: c.e.rank(x) }, (_, i) => i);
  const keep = attrInt(c.node, 'keepdims', 1) === 1;
  const gk = keep || all.length === 0 ? g : c.e.unsqueeze(g, all);
  return c.e.op1('Expand', [gk, c.e.shape(x)]);
}

const reduceSum: GradRule = (c) => [spreadBack(c), null];

const reduceMean: GradRule = (c) => {
  const x = c.node.inputs[0];
  const y = c.node.outputs[0];
  const spread = spreadBack(c);
  // count = numel(x) / numel(y), exact in int64, then cast to the float type.
  const count = c.e.op1('Div', [c.e.op1('Size', [x]), c.e.op1('Size', [y])]);
  const countF = c.e.op1('Cast', [count], { to: onnxTypeCode(c.e.meta(x).type) });
  return [c.e.op1('Div', [spread, countF]), null];
};

export const REDUCE_RULES: Record<string, GradRule> = { ReduceSum: reduceSum, ReduceMean: reduceMean };
