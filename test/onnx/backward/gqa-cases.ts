/**
 * GroupQueryAttention kernel-comparison cases: one description (shapes, rows, past, features)
 * turned into the node's inputs and attributes, shared by the feature cases and the random ones.
 */
import { float, type AttrInput } from '../../../onnx/builder.ts';
import { randomValues, type InputSpec, type OpCase } from './kernel-harness.ts';

export const MAX_POSITION = 40;

/** Llama-style rotary tables for positions 0..maxS-1. */
export function rotaryCaches(maxS: number, half: number): number[][] {
  const cos: number[] = [];
  const sin: number[] = [];
  for (let p = 0; p < maxS; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * Math.pow(10000, -i / half);
      cos.push(Math.cos(a));
      sin.push(Math.sin(a));
    }
  }
  return [cos, sin];
}

export interface GqaCase {
  B: number;
  S: number;
  N: number;
  K: number;
  H: number;
  /** Each row's total length (past + new): seqlens_k = lengths − 1. */
  lengths: number[];
  /** Past buffer length P (default 0); without `withPast` P 0 omits the past inputs. */
  past?: number;
  /** Feed past_key/value even when P is 0 (genai's prompt pass feeds an empty past). */
  withPast?: boolean;
  /** total_sequence_length (default P + S). */
  total?: number;
  half?: number;
  packed?: boolean;
  positionIds?: number[];
  /** attention_bias dims [B|1, N|1, S, total]: which of batch / heads it has. */
  bias?: { batch: boolean; heads: boolean };
  headSink?: number[];
  attrs?: Record<string, AttrInput>;
}

export function gqaCase(c: GqaCase, r: () => number): OpCase {
  const P = c.past ?? 0;
  const total = c.total ?? P + c.S;
  const f = (name: string, dims: number[], scale = 2): InputSpec => ({ name, type: 'float32', dims, data: randomValues(r, dims.reduce((a, b) => a * b, 1), scale) });
  const half = c.half ?? c.H / 2;
  const [cos, sin] = rotaryCaches(MAX_POSITION, half);
  const qkv: (InputSpec | '')[] = c.packed === false
    ? [f('q', [c.B, c.S, c.N * c.H]), f('k', [c.B, c.S, c.K * c.H]), f('v', [c.B, c.S, c.K * c.H])]
    : [f('qkv', [c.B, c.S, (c.N + 2 * c.K) * c.H]), '', ''];
  const past: (InputSpec | '')[] = P > 0 || c.withPast ? [f('past_key', [c.B, c.K, P, c.H], 1), f('past_value', [c.B, c.K, P, c.H], 1)] : ['', ''];
  const inputs: (InputSpec | '')[] = [
    ...qkv,
    ...past,
    { name: 'seqlens_k', type: 'int32', dims: [c.B], data: c.lengths.map((l) => l - 1) },
    { name: 'total_sequence_length', type: 'int32', dims: [1], data: [total] },
    { name: 'cos_cache', type: 'float32', dims: [MAX_POSITION, half], data: cos },
    { name: 'sin_cache', type: 'float32', dims: [MAX_POSITION, half], data: sin },
    c.positionIds ? { name: 'position_ids', type: 'int64', dims: [c.B, c.S], data: c.positionIds } : '',
    c.bias ? f('attention_bias', [c.bias.batch ? c.B : 1, c.bias.heads ? c.N : 1, c.S, total], 3) : '',
    c.headSink ? { name: 'head_sink', type: 'float32', dims: [c.N], data: c.headSink } : '',
  ];
  while (inputs[inputs.length - 1] === '') inputs.pop();
  return { op: 'GroupQueryAttention', inputs, attrs: { num_heads: c.N, kv_num_heads: c.K, ...c.attrs }, outputs: 3 };
}

/**
 * A random case: batch, sequence, heads, GQA ratio, head size, mode (first prompt, padded decode
 * with per-row pasts, or a subsequent prompt of one row), row lengths, rotary flavour and the
 * optional features, all drawn.
 */
export function randomGqaCase(r: () => number): [string, GqaCase] {
  const pick = <T,>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const K = pick([1, 2]);
  const H = pick([16, 32]);
  const mode = pick(['prompt', 'prompt', 'decode', 'decode', 'subsequent'] as const);
  let B = int(1, 4);
  let S: number, P: number, lengths: number[], total: number;
  if (mode === 'prompt') {
    S = int(1, 7);
    P = 0;
    total = S;
    lengths = Array.from({ length: B }, () => int(1, S));
  } else if (mode === 'decode') {
    S = 1;
    P = int(1, 6);
    total = P + 1;
    lengths = Array.from({ length: B }, () => int(1, P + 1));
  } else {
    B = 1;
    S = int(2, 4);
    P = int(1, 6);
    const own = int(0, P);
    lengths = [own + S];
    total = P + S;
  }
  const rotary = pick([0, 1]);
  const past = P > 0 ? P : 0;
  const feature = {
    smooth: r() < 0.3 ? 1 : 0,
    sink: r() < 0.3,
    bias: r() < 0.4 ? { batch: r() < 0.5, heads: r() < 0.5 } : undefined,
    softcap: r() < 0.3 ? 2 : 0,
    window: r() < 0.3 ? int(1, 4) : -1,
    ids: mode !== 'prompt' && rotary === 1 && r() < 0.5,
  };
  const N = K * pick([1, 2, 4]);
  const positionIds = feature.ids ? lengths.flatMap((l) => Array.from({ length: S }, (_, s) => l - S + s + int(0, 3))) : undefined;
  const c: GqaCase = {
    B, S, N, K, H, lengths, past, withPast: mode === 'prompt' && r() < 0.5, total, positionIds, bias: feature.bias,
    headSink: feature.sink ? Array.from({ length: N }, () => (r() * 2 - 1) * 2) : undefined,
    packed: pick([true, false]),
    attrs: { do_rotary: rotary, rotary_interleaved: pick([0, 1]), smooth_softmax: feature.smooth, local_window_size: feature.window, ...(feature.softcap ? { softcap: float(feature.softcap) } : {}) },
  };
  const parts = [`B ${B}`, `S ${S}`, mode, `P ${P}`, `lengths ${lengths}`, `${N}/${K} heads of ${H}`, `rotary ${rotary}`];
  for (const [k, v] of Object.entries(feature)) if (v && v !== -1) parts.push(`${k} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return [parts.join(', '), c];
}
