/**
 * One forward run that reveals the element type and rank of every tensor the backward pass
 * touches. quantlens has no ONNX shape inference of its own, and exported graphs rarely carry
 * value_info for intermediates, so it asks ONNX Runtime: the model is run once on a tiny
 * left-padded batch (batch 2, sequence 5) with the wanted tensors appended as graph outputs.
 * Batch 2 / sequence 5 keep every symbolic dim away from 1, so a 1 in a probe shape is a static
 * broadcast dim; that is the only fact about sizes the gradient rules rely on.
 */
import { appendGraphOutputs } from '../builder.ts';
import type ort from 'onnxruntime-node';
import { buildFeeds, planInputs, type FeedBatch } from '../feeds.ts';
import type { OnnxModel } from '../model-reader.ts';
import { createSession, defaultSessionSettings } from '../session.ts';
import { dtypeName, halfToFloat } from '../dtypes.ts';
import type { TensorMeta } from './emitter.ts';

export const PROBE_BATCH = { seqLen: 5, lengths: Int32Array.from([5, 3]), ids: [Int32Array.from([1, 5, 4, 3, 2]), Int32Array.from([1, 3, 4])] };

const ORT_TYPE: Record<string, string> = { float: 'float32', double: 'float64' };

/** ORT element type name of an ONNX data type code. */
export function ortTypeOf(code: number): string {
  const n = dtypeName(code);
  return ORT_TYPE[n] ?? n;
}

/** Builds the feeds of one batch for a model whose inputs planInputs cannot classify. */
export type FeedBuilder = (batch: FeedBatch, padId: number) => Record<string, ort.Tensor>;

/** A probed tensor; `values` (as float32) only for float tensors asked for in `keepValues`. */
export interface ProbedTensor extends TensorMeta {
  values?: Float32Array;
}

function floatValues(t: ort.Tensor): Float32Array | undefined {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float64') return Float32Array.from(t.data as Float64Array);
  if (t.type === 'float16') return halfToFloat(t.data as Uint16Array);
  return undefined;
}

/**
 * Settings of a probe session: no graph optimisation, so every requested intermediate exists as
 * the graph computes it; no prepacking, which would copy every MatMul weight (unpacked, referenced
 * weights stay mapped file pages); one thread.
 */
export function probeSessionSettings() {
  return { ...defaultSessionSettings(), graphOptimizationLevel: 'disabled' as const, intraOpThreads: 1, extra: { 'session.disable_prepacking': '1' } };
}

export async function probeTensors(
  m: OnnxModel,
  modelBytes: Uint8Array,
  names: string[],
  opts: { externalDataDir?: string; feeds?: FeedBuilder; keepValues?: Set<string> } = {},
): Promise<Map<string, ProbedTensor>> {
  const existing = new Set(m.outputs.map((o) => o.name));
  const extra = [...new Set(names)].filter((n) => !existing.has(n)).map((name) => ({ name }));
  const bytes = appendGraphOutputs(modelBytes, extra);
  const settings = probeSessionSettings();
  const where = { externalDataDir: opts.externalDataDir, where: 'backward graph probe' };
  // Some exports load only after ORT's basic rewrites (transformers.js fp16 models declare float
  // casts as float16 in value_info); basic keeps every graph output, so the probe still sees them.
  const session = await createSession(bytes, settings, where).catch(() => createSession(bytes, { ...settings, graphOptimizationLevel: 'basic' }, where));
  try {
    const feeds = opts.feeds ? opts.feeds(PROBE_BATCH, 0) : buildFeeds(planInputs(session), PROBE_BATCH, 0);
    const results = await session.run(feeds);
    const out = new Map<string, ProbedTensor>();
    for (const [name, t] of Object.entries(feeds)) out.set(name, { type: t.type, shape: [...t.dims] });
    for (const [name, t] of Object.entries(results)) {
      const values = opts.keepValues?.has(name) ? floatValues(t) : undefined;
      out.set(name, { type: t.type, shape: [...t.dims], ...(values ? { values } : {}) });
    }
    return out;
  } finally {
    await session.release();
  }
}
