/**
 * Forward equality of a decomposition with ONNX Runtime's own kernel: one model holds the contrib
 * node and, appended, its decomposition (onnx/backward/decompose.ts); one run on random inputs
 * gives both, compared output by output.
 *
 * Tolerance: max|kernel − decomposed| ≤ 1e-5 · max|kernel| per output (relative to the output's
 * scale; element-wise relative error is meaningless where an output crosses zero). float32
 * evaluation of the same formula in another order differs by ~1e-7 of the scale.
 */
import ort from 'onnxruntime-node';
import { GraphBuilder, appendGraphFragment, type AttrInput } from '../../../onnx/builder.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { GradEmitter, type TensorMeta } from '../../../onnx/backward/emitter.ts';
import { decompositionFor } from '../../../onnx/backward/decompose.ts';
import { floatToHalf, halfToFloat } from '../../../onnx/dtypes.ts';

export interface InputSpec {
  name: string;
  type: 'float32' | 'float16' | 'int32' | 'int64' | 'bool';
  dims: number[];
  data: ArrayLike<number>;
}

export interface OpCase {
  op: string;
  domain?: string;
  /** ai.onnx opset of the test model (default 17). */
  opset?: number;
  /** '' = omitted optional input. */
  inputs: (InputSpec | '')[];
  attrs?: Record<string, AttrInput>;
  outputs: number;
}

export interface KernelComparison {
  /** Per output: max|a−b| / max|a|, or null when the decomposition does not reproduce it. */
  relErr: (number | null)[];
  kernel: Float32Array[];
  decomposed: (Float32Array | null)[];
}

const ONNX_TYPE = { float32: 'float', float16: 'float16', int32: 'int32', int64: 'int64', bool: 'bool' } as const;

function ortTensor(s: InputSpec): ort.Tensor {
  if (s.type === 'float32') return new ort.Tensor('float32', Float32Array.from(s.data), s.dims);
  if (s.type === 'float16') return new ort.Tensor('float16', floatToHalf(s.data), s.dims);
  if (s.type === 'int32') return new ort.Tensor('int32', Int32Array.from(s.data), s.dims);
  if (s.type === 'bool') return new ort.Tensor('bool', Uint8Array.from(s.data), s.dims);
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(s.data, (v) => BigInt(v))), s.dims);
}

export async function compareWithKernel(c: OpCase): Promise<KernelComparison> {
  const domain = c.domain ?? 'com.microsoft';
  const g = new GraphBuilder('kernel');
  for (const s of c.inputs) if (s) g.input(s.name, ONNX_TYPE[s.type], s.dims);
  const outs = Array.from({ length: c.outputs }, (_, k) => `y${k}`);
  g.node(c.op, c.inputs.map((s) => (s ? s.name : '')), outs, c.attrs ?? {}, { domain, name: 'under_test' });
  for (const o of outs) g.output(o);
  const opset = c.opset ?? 17;
  const base = g.toModel({ opset, domains: { 'com.microsoft': 1 } });
  const m = readOnnxModel(base);
  const node = m.nodes.find((n) => n.name === 'under_test')!;
  const metas = new Map<string, TensorMeta>();
  for (const s of c.inputs) if (s) metas.set(s.name, { type: s.type, shape: s.dims });
  const e = new GradEmitter(opset, (n) => metas.get(n), '/test/decomp');
  const decompose = decompositionFor(c.op, domain);
  if (!decompose) throw new Error(`no decomposition for ${domain}:${c.op}`);
  const produced = decompose({ node, e, constInts: (n) => e.intConstants.get(n) });
  const extra = produced.flatMap((p) => (p ? [{ name: p }] : []));
  const bytes = appendGraphFragment(base, { nodes: e.nodes, outputs: extra });
  // Severity 3: ORT's warnings about the appended graph (unused constants, declared shapes) are noise here.
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled', logSeverityLevel: 3 });
  const feeds = Object.fromEntries(c.inputs.flatMap((s) => (s ? [[s.name, ortTensor(s)]] : [])));
  const res = await session.run(feeds);
  await session.release();
  // float16 outputs come back as raw halves: compared as floats.
  const asFloat = (t: ort.Tensor) => (t.type === 'float16' ? halfToFloat(t.data as Uint16Array) : (t.data as Float32Array));
  const kernel = outs.map((o) => asFloat(res[o]));
  const decomposed = produced.map((p) => (p ? asFloat(res[p]) : null));
  const relErr = kernel.map((a, k) => {
    const b = decomposed[k];
    if (!b) return null;
    if (b.length !== a.length) return Infinity;
    let scale = 0;
    let err = 0;
    for (let i = 0; i < a.length; i++) {
      scale = Math.max(scale, Math.abs(a[i]));
      err = Math.max(err, Math.abs(a[i] - b[i]));
    }
    return err / Math.max(scale, 1e-30);
  });
  return { relErr, kernel, decomposed };
}

/** Uniform random values in [-scale, scale). */
export function randomValues(r: () => number, n: number, scale = 1): number[] {
  return Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}
