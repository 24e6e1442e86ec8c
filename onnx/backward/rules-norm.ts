/**
 * Normalisation layers with respect to their activation input (scale/bias are weights: never
 * differentiated). With x̂ the normalised input, r the inverse std / rms, gh = g ⊙ scale and
 * means over the normalised axes:
 *   LayerNorm: dx = r ⊙ (gh − mean(gh) − x̂ ⊙ mean(gh ⊙ x̂))
 *   RMSNorm:   dx = r ⊙ (gh − x̂ ⊙ mean(gh ⊙ x̂))
 */
import { normAxis } from './emitter.ts';
import { attrFloat, attrInt, gradError, type GradRule, type RuleContext } from './rule.ts';

function normGrad(c: RuleContext, x: string, g: string, scale: string, axes: number[], eps: number, centred: boolean): string {
  const e = c.e;
  const type = e.meta(x).type;
  const xc = centred ? e.op1('Sub', [x, e.reduceMean(x, axes, true)]) : x;
  const ms = e.reduceMean(e.op1('Mul', [xc, xc]), axes, true);
  const r = e.op1('Reciprocal', [e.op1('Sqrt', [e.op1('Add', [ms, e.scalar(eps, type)])])]);
  const xhat = e.op1('Mul', [xc, r]);
  const gh = e.op1('Mul', [g, scale]);
  let inner = e.op1('Sub', [gh, e.op1('Mul', [xhat, e.reduceMean(e.op1('Mul', [gh, xhat]), axes, true)])]);
  if (centred) inner = e.op1('Sub', [inner, e.reduceMean(gh, axes, true)]);
  return e.op1('Mul', [r, inner]);
}

function refuseWeightsAndStats(c: RuleContext, weightInputs: number[], statOutputs: number[]): void {
  for (const i of weightInputs) if (c.needs[i]) throw gradError(c.node, `input ${i} (a weight) depends on the override; not supported`);
  for (const o of statOutputs) if (c.gy[o]) throw gradError(c.node, `output ${o} (a statistic) is used downstream; not supported`);
}

function axesFrom(c: RuleContext, x: string, defaultAxis: number): number[] {
  const r = c.e.rank(x);
  const axis = normAxis(attrInt(c.node, 'axis', defaultAxis), r);
  return Array.from({ length: r - axis }, (_, i) => axis + i);
}

// LayerNormalization(X, Scale, B?); centred=false is RMSNorm
function layerNorm(centred: boolean): GradRule {
  return (c) => {
    refuseWeightsAndStats(c, [1, 2], [1, 2]);
    const [x, scale] = c.node.inputs;
    const g = c.gy[0];
    if (!g) throw gradError(c.node, 'no gradient reached its output');
    const axes = axesFrom(c, x, -1);
    return [normGrad(c, x, g, scale, axes, attrFloat(c.node, 'epsilon', 1e-5), centred), null, null];
  };
}

// ORT's SimplifiedLayerNormalization and Skip(Simplified)LayerNormalization are differentiated
// through their decompositions (decompose-norm.ts), checked against ORT's kernels.
export const NORM_RULES: Record<string, GradRule> = {
  LayerNormalization: layerNorm(true),
};
