/**
 * Central finite differences against the backward graph, on small synthetic models:
 *
 *   input_ids ─Cast─▸ ·w0 + b0 ─▸ act [B,T,W] ─▸ body(op under test) ─▸ [B,T,K] ─MatMul─▸ logits [B,T,V]
 *
 * The attribution graph's gradient d(Σ_b F_b)/d act is compared with (F(a+h·e_i) − F(a−h·e_i))/2h
 * over EVERY coordinate i of act, evaluated by the same model in float32 (F = Σ_b objective[b]).
 *
 * Tolerance: with h = 1e-2 on O(1) activations, the central difference has truncation error
 * h²/6·|F'''| ≈ 2e-5·|F'''| and rounding error ≈ eps32·|F|/h ≈ 6e-8·(10)/1e-2 = 6e-5 (F is a sum of a
 * few log-probs, |F| ≲ 10). So |fd − exact| ≲ 1e-4 on well-conditioned coordinates; we allow
 * 1e-2·|fd| + 1e-3, two orders of magnitude above that, yet a wrong rule (missing factor, wrong
 * axis, wrong broadcast reduction) moves gradients by O(|g|) and fails.
 * The test batch (3×4) differs from the probe's (2×5), so symbolic dims are exercised.
 */
import ort from 'onnxruntime-node';
import { GraphBuilder, tensor } from '../../../onnx/builder.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { buildAttributionGraphWithInfo, gradName, overrideName, TARGET_INPUT, OBJECTIVE_OUTPUT } from '../../../onnx/backward/graph.ts';
import { mulberry32 } from '../../../core/random.ts';

export const B = 3;
export const T = 4;
export const W = 6;
export const V = 5;

export const rng = mulberry32;

export interface Body {
  /** Builds the op under test from `act` [B,T,W]; returns a [B,T,k] tensor. */
  (g: GraphBuilder, act: string, h: Helpers): { out: string; k: number };
}

export interface Helpers {
  f32(values: number[], dims: number[]): string;
  i64(values: number[], dims?: number[]): string;
  rand(dims: number[], scale?: number): string;
  /** Shape [B, T] of act as an int64 tensor (runtime), for building [B,T,k] shapes. */
  bt(): string;
  /** [B, T, k] runtime shape. */
  btk(k: number): string;
}

/**
 * The synthetic model. With actInput the same model without its first stage: `act` is a graph
 * input (the same random weights are drawn, so body and head weights are identical).
 */
export function syntheticModel(body: Body, seed = 1, domains: Record<string, number> = {}, actInput = false, opset = 17): Uint8Array {
  const g = new GraphBuilder('synthetic');
  const r = rng(seed);
  const randVals = (n: number, scale: number) => Array.from({ length: n }, () => (r() * 2 - 1) * scale);
  const h: Helpers = {
    f32: (values, dims) => g.constF32(values, dims),
    i64: (values, dims) => g.constI64(values, dims ?? [values.length]),
    rand: (dims, scale = 1) => g.constF32(randVals(dims.reduce((a, b) => a * b, 1), scale), dims),
    bt: () => g.node('Slice', [g.node('Shape', ['act'])[0], g.constI64([0]), g.constI64([2])])[0],
    btk: (k) => g.node('Concat', [h.bt(), g.constI64([k])], 1, { axis: 0 })[0],
  };
  if (actInput) {
    g.input('act', 'float', ['batch', 'seq', W]);
    randVals(2 * W, 1);
  } else {
    g.input('input_ids', 'int64', ['batch', 'seq']);
    const [xf] = g.node('Cast', ['input_ids'], 1, { to: 1 });
    const [xu] = opset < 13 ? g.node('Unsqueeze', [xf], 1, { axes: [2] }) : g.node('Unsqueeze', [xf, g.constI64([-1])]);
    const [xw] = g.node('Mul', [xu, h.rand([W])]);
    g.node('Add', [xw, h.rand([W])], ['act']);
  }
  const { out, k } = body(g, 'act', h);
  g.node('MatMul', [out, h.rand([k, V], 1.5)], ['logits']);
  g.output('logits', 'float', ['batch', 'seq', V]);
  return g.toModel({ opset, domains });
}

/** The tolerance of every central-difference check (see the header): |g − fd| ≤ 1e-2·|fd| + 1e-3. */
export function fdAgrees(g: number, fd: number): boolean {
  return Math.abs(g - fd) <= 1e-2 * Math.abs(fd) + 1e-3;
}

/** [F(a + h·eᵢ), F(a − h·eᵢ)], each evaluated on a fresh copy of a. */
export async function plusMinus(F: (x: Float32Array) => Promise<number>, a: Float32Array, i: number, h: number): Promise<[number, number]> {
  const p = a.slice();
  p[i] += h;
  const m = a.slice();
  m[i] -= h;
  return [await F(p), await F(m)];
}

/** The coordinates where `g` disagrees with central differences of F at a, as "i: g vs fd". */
export async function coordinatesOff(F: (x: Float32Array) => Promise<number>, a: Float32Array, g: ArrayLike<number>, coords: Iterable<number>, h = 1e-2): Promise<string[]> {
  const bad: string[] = [];
  for (const i of coords) {
    const [fp, fm] = await plusMinus(F, a, i, h);
    const fd = (fp - fm) / (2 * h);
    if (!fdAgrees(g[i], fd)) bad.push(`${i}: ${g[i]} vs ${fd}`);
  }
  return bad;
}

export interface FdReport {
  coordinates: number;
  failures: string[];
  maxAbsGrad: number;
  maxAbsErr: number;
  pathOps: string[];
}

/**
 * opts.kinks: the function has kinks (Relu, Clip, Abs). A coordinate whose one-sided differences
 * disagree by more than smooth curvature allows (h·|F''| ≪ 0.1·|F'| + 1e-2) straddles a kink, where
 * no derivative exists; such coordinates are skipped (at most 10% of them, else the test fails).
 * The kink test uses only forward evaluations, so it cannot hide a wrong backward rule.
 */
export async function fdCheck(body: Body, opts: { seed?: number; positive?: boolean; domains?: Record<string, number>; h?: number; kinks?: boolean; opset?: number } = {}): Promise<FdReport> {
  const seed = opts.seed ?? 7;
  const model = readOnnxModel(syntheticModel(body, seed, opts.domains, false, opts.opset));
  const { bytes, info } = await buildAttributionGraphWithInfo(model, { layerTensors: ['act'] });
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled' });
  const r = rng(seed + 1000);
  const n = B * T * W;
  const a = Float32Array.from({ length: n }, () => (opts.positive ? 0.5 + r() : r() * 2 - 1));
  const ids = new ort.Tensor('int64', BigInt64Array.from({ length: B * T }, () => BigInt(1 + Math.floor(r() * 5))), [B, T]);
  const target = new ort.Tensor('int64', BigInt64Array.from({ length: B }, () => BigInt(Math.floor(r() * V))), [B]);
  const run = async (x: Float32Array) => {
    const out = await session.run({ input_ids: ids, [TARGET_INPUT]: target, [overrideName('act')]: new ort.Tensor('float32', x, [B, T, W]) });
    const F = out[OBJECTIVE_OUTPUT].data as Float32Array;
    let sum = 0;
    for (const v of F) sum += v;
    return { F: sum, grad: out[gradName('act')]?.data as Float32Array };
  };
  const base = await run(a);
  const h = opts.h ?? 1e-2;
  const failures: string[] = [];
  let maxAbsGrad = 0;
  let maxAbsErr = 0;
  let skipped = 0;
  for (let i = 0; i < n; i++) {
    const [fp, fm] = await plusMinus(async (x) => (await run(x)).F, a, i, h);
    const fd = (fp - fm) / (2 * h);
    if (opts.kinks) {
      const fwd = (fp - base.F) / h;
      const bwd = (base.F - fm) / h;
      if (Math.abs(fwd - bwd) > 0.1 * Math.max(Math.abs(fwd), Math.abs(bwd)) + 1e-2) {
        skipped++;
        continue;
      }
    }
    const g = base.grad[i];
    const err = Math.abs(g - fd);
    maxAbsGrad = Math.max(maxAbsGrad, Math.abs(g));
    maxAbsErr = Math.max(maxAbsErr, err);
    if (!fdAgrees(g, fd)) failures.push(`coord ${i}: backward ${g.toExponential(4)} vs fd ${fd.toExponential(4)}`);
  }
  await session.release();
  if (skipped > n / 10) failures.push(`${skipped} of ${n} coordinates straddle a kink; too many to trust the check`);
  return { coordinates: n, failures, maxAbsGrad, maxAbsErr, pathOps: [...new Set([...info.pathNodes, ...info.decomposed].map((x) => x.opType))] };
}

export { tensor };
