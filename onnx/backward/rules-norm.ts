/**
 * Normalisation layers with respect to their activation input (scale/bias are weights: never
 * differentiated). With x̂ the normalised input, r the inverse std / rms, gh = g ⊙ scale and
 * means over the normalised axes:
 *   LayerNorm: dx = r ⊙ (gh − mean(gh) − x̂ ⊙ mean(gh ⊙ x̂))
 *   RMSNorm:   dx = r ⊙ (gh − x̂ ⊙ mean(gh ⊙ x̂))
 */
import { normAxis } from './emitter.ts';
import { attrFloat, attrInt, gradError, optionalInput, type GradRule, type RuleContext } from './rule.ts';

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

// LayerNormalization(X, Scale, B?) / SimplifiedLayerNormalization(X, Scale)
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

/**
 * Skip(Simplified)LayerNormalization (com.microsoft): s = input + skip (+ bias); y = norm(s)·γ(+β);
 * output 3 is s itself. Both input and skip get ds (skip may be broadcast).
 */
function skipLayerNorm(centred: boolean): GradRule {
  return (c) => {
    const weights = centred ? [2, 3, 4] : [2, 3];
    refuseWeightsAndStats(c, weights, [1, 2]);
    const e = c.e;
    const [input, skip, gamma] = c.node.inputs;
    const bias = optionalInput(c.node, centred ? 4 : 3);
    const sumOut = c.node.outputs[3] || undefined;
    const type = e.meta(input).type;
    let s = sumOut ?? e.op1('Add', [input, skip]);
    if (!sumOut && bias) s = e.op1('Add', [s, bias]);
    e.setMeta(s, { type, shape: e.meta(input).shape });
    const parts: string[] = [];
    if (c.gy[0]) parts.push(normGrad(c, s, c.gy[0], gamma, [e.rank(input) - 1], attrFloat(c.node, 'epsilon', 1e-5), centred));
    if (c.gy[3]) parts.push(c.gy[3]);
    const ds = parts.length === 1 ? parts[0] : e.op1('Sum', parts);
    const out: (string | null)[] = c.node.inputs.map(() => null);
    if (c.needs[0]) out[0] = e.unbroadcast(ds, e.meta(input).shape, input);
    if (c.needs[1]) out[1] = e.unbroadcast(ds, e.meta(input).shape, skip);
    return out;
  };
}

export const NORM_RULES: Record<string, GradRule> = {
  LayerNormalization: layerNorm(true),
  SimplifiedLayerNormalization: layerNorm(false),
  'com.microsoft:SimplifiedLayerNormalization': layerNorm(false),
  'com.microsoft:SkipSimplifiedLayerNormalization': skipLayerNorm(false),
  'com.microsoft:SkipLayerNormalization': skipLayerNorm(true),
};
