/**
 * The MLP activation functions real exports contain, as scalar float64 reference functions, and
 * the mapping from a Hugging Face config's `hidden_act` / `activation_function` to them. Used to
 * recognise an activation subgraph by its values (whatever order the exporter wrote its ops in)
 * and by tests to check captured = act(input) independently of the graph.
 */

export type ActivationKind = 'silu' | 'gelu' | 'gelu_tanh' | 'quick_gelu' | 'relu';

/** erf to ~1e-12 for |x| ≤ 3 (Taylor series), ~1.5e-7 beyond (Abramowitz–Stegun 7.1.26, where erf ≈ ±1). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax <= 3) {
    // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 80; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  const t = 1 / (1 + 0.3275911 * ax);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const y = 1 - poly * Math.exp(-ax * ax);
  return x < 0 ? -y : y;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export const ACTIVATIONS: Record<ActivationKind, (x: number) => number> = {
  silu: (x) => x * sigmoid(x),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
  quick_gelu: (x) => x * sigmoid(1.702 * x),
  relu: (x) => Math.max(0, x),
};

/** Hugging Face activation names (transformers' ACT2FN keys) → kind; null when not an MLP activation we know. */
export function activationFromConfigName(name: unknown): ActivationKind | null {
  if (typeof name !== 'string') return null;
  const n = name.toLowerCase();
  if (n === 'silu' || n === 'swish') return 'silu';
  if (n === 'gelu' || n === 'gelu_python' || n === 'gelu_accurate_erf') return 'gelu';
  if (n === 'gelu_new' || n === 'gelu_pytorch_tanh' || n === 'gelu_fast' || n === 'gelu_tanh') return 'gelu_tanh';
  if (n === 'quick_gelu') return 'quick_gelu';
  if (n === 'relu') return 'relu';
  return null;
}

/** The activation a config declares (`hidden_act`, GPT-2's `activation_function`, OPT's too). */
export function configActivation(config: Record<string, unknown> | null | undefined): ActivationKind | null {
  if (!config) return null;
  // Gemma: hidden_activation overrides the legacy hidden_act, as in transformers.
  return activationFromConfigName(config.hidden_activation ?? config.hidden_act ?? config.activation_function);
}

/** Sample points for recognising a function by value: dense near 0 where the GELUs differ most. */
export const PROBE_POINTS: number[] = Array.from({ length: 97 }, (_, i) => -6 + i * 0.125);

/**
 * Which known activation `f` is, by its values at PROBE_POINTS (max abs difference ≤ tol), or null.
 * gelu and gelu_tanh differ by up to ~3e-4 near |x| ≈ 2, far above float32 rounding of constants.
 */
export function identifyActivation(f: (x: number) => number, tol = 2e-5): ActivationKind | null {
  const values = PROBE_POINTS.map(f);
  if (values.some((v) => !Number.isFinite(v))) return null;
  for (const kind of Object.keys(ACTIVATIONS) as ActivationKind[]) {
    const ref = ACTIVATIONS[kind];
    if (PROBE_POINTS.every((x, i) => Math.abs(values[i] - ref(x)) <= tol * Math.max(1, Math.abs(x)))) return kind;
  }
  return null;
}
