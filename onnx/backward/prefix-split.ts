/**
 * The α-independent prefix of an attribution graph, split off so the integrand runs skip it.
 * Every (example, α) row of LIG feeds the same input ids and differs only in `T__override`: the
 * nodes that depend on neither the override nor the target ids (embedding, the layers before the
 * site, masks, rotary tables) compute the same values on all α rows of an example. The suffix
 * graph holds everything else, and reads the tensors crossing from the prefix (the cut) as inputs;
 * the full graph gets the cut tensors as extra outputs, so the activation run, which runs once per
 * example anyway, fetches them. ONNX Runtime runs every node of a session whatever a run fetches,
 * hence a second graph rather than a choice of fetches.
 *
 * Derived from the graph, not from names:
 *  - dynamic  = depends (transitively, also through If/Loop subgraphs' outer-scope reads) on the
 *               override or the target ids;
 *  - the cut  = float tensors that are static, computed from a fed input (not constants), and read
 *               by the suffix. Static non-float nodes (shapes, int/bool masks, position ids) stay in
 *               the suffix and are recomputed from the inputs: their values may hold the batch size.
 *  - per cut tensor, the batch axis: probed on 2 and 3 rows (the one axis going 2 → 3), and how
 *    its size follows the sequence (2 rows at 5 and 7 tokens), for the memory budget. A tensor
 *    without a batch axis is fed once and must be the same on 2 and 3 rows. A cut tensor whose
 *    rows cannot be told apart ([batch·sequence, W] flat, …) refuses the split: the caller falls
 *    back to the full graph and records the reason.
 */
import { QuantlensError } from '../../core/errors.ts';
import ort from 'onnxruntime-node';
import { appendGraphOutputs, encodeRankedValueInfo } from '../builder.ts';
import { buildFeeds, planInputs, type FeedBatch } from '../feeds.ts';
import { readOnnxModel, type NodeInfo, type OnnxModel } from '../model-reader.ts';
import { createSession } from '../session.ts';
import { DTYPE } from '../dtypes.ts';
import { fields, ProtoWriter, str } from '../wire.ts';
import { FORWARD_ONLY_TARGET } from './backward-branch.ts';
import { TARGET_INPUT } from './emitter.ts';
import { PROBE_BATCH, probeSessionSettings, type FeedBuilder } from './probe.ts';

/** One tensor crossing from the prefix into the suffix. */
export interface CutTensor {
  name: string;
  /** ORT element type ('float32', 'float16', …). */
  type: string;
  /** Axis holding the rows (example index); null: no batch axis, fed once per run. */
  batchAxis: number | null;
  /**
   * The batch axis is a batch-major flattening [batch·sequence, …] (a Gemm MLP's residual, as in
   * OPT exports): each row is `sequence` consecutive entries along it.
   */
  flat?: boolean;
  /** Shape at 2 rows × 5 tokens and at 2 rows × 7 tokens: a dim that differs follows the sequence (affinely). */
  dims5: number[];
  dims7: number[];
}

export interface PrefixInfo {
  cut: CutTensor[];
  /** Nodes of the full graph the suffix leaves out (the prefix) and keeps. */
  prefixNodes: number;
  suffixNodes: number;
  /** Inputs of the full graph the suffix reads directly (fed as usual). */
  inputs: string[];
}

export type PrefixSplit = { bytes: Uint8Array; graph: Uint8Array; info: PrefixInfo } | { refused: string };

const FLOAT = new Set(['float32', 'float16', 'float64', 'bfloat16']);
const ELEM_CODE: Record<string, number> = { float32: DTYPE.float, float16: DTYPE.float16, float64: DTYPE.double, bfloat16: 16 };
const ATTRIBUTE = 5;
const ATTR_GRAPH = 6;
const ATTR_GRAPHS = 11;

/** Outer-scope names read by the subgraphs of a node (If/Loop/Scan bodies), recursively. */
function subgraphReads(buf: Uint8Array, node: NodeInfo): string[] {
  const out = new Set<string>();
  const graph = (start: number, end: number) => {
    const local = new Set<string>();
    const reads: string[] = [];
    for (const g of fields(buf, start, end)) {
      if (g.field === 1) {
        for (const f of fields(buf, g.start, g.end)) {
          if (f.field === 1) reads.push(str(buf, f));
          else if (f.field === 2) local.add(str(buf, f));
          else if (f.field === ATTRIBUTE) attribute(f.start, f.end, reads);
        }
      } else if (g.field === 11 || g.field === 5) {
        for (const f of fields(buf, g.start, g.end)) if (f.field === 1) local.add(str(buf, f));
      }
    }
    return reads.filter((r) => r && !local.has(r));
  };
  const attribute = (start: number, end: number, into: string[]) => {
    for (const a of fields(buf, start, end)) if (a.field === ATTR_GRAPH || a.field === ATTR_GRAPHS) into.push(...graph(a.start, a.end));
  };
  const top: string[] = [];
  for (const f of fields(buf, node.range[0], node.range[1])) if (f.field === ATTRIBUTE) attribute(f.start, f.end, top);
  for (const r of top) out.add(r);
  return [...out];
}

/** The probe batches: 2 rows × 5 tokens (PROBE_BATCH), 3 rows × 5, 2 rows × 7 (left-padded, ids < 6). */
const BATCH3: FeedBatch = { seqLen: 5, lengths: Int32Array.from([5, 3, 4]), ids: [...PROBE_BATCH.ids, Int32Array.from([1, 2, 5, 3])] };
const BATCH7: FeedBatch = { seqLen: 7, lengths: Int32Array.from([7, 4]), ids: [Int32Array.from([1, 5, 4, 3, 2, 4, 5]), Int32Array.from([1, 3, 4, 2])] };

async function probeRuns(
  bytes: Uint8Array,
  names: string[],
  batches: FeedBatch[],
  override: { name: string; shape: (rows: number, seq: number) => number[]; type: string },
  opts: { externalDataDir?: string; feeds?: FeedBuilder },
): Promise<Record<string, ort.Tensor>[]> {
  const session = await createSession(appendGraphOutputs(bytes, names.map((name) => ({ name }))), probeSessionSettings(), { externalDataDir: opts.externalDataDir, where: 'attribution prefix probe' });
  try {
    const ours = new Set([override.name, TARGET_INPUT]);
    const plan = opts.feeds ? undefined : planInputs({ inputMetadata: (session.inputMetadata as readonly { name: string }[]).filter((x) => !ours.has(x.name)) } as unknown as Pick<ort.InferenceSession, 'inputMetadata'>);
    const out: Record<string, ort.Tensor>[] = [];
    for (const b of batches) {
      const feeds = opts.feeds ? opts.feeds(b, 0) : buildFeeds(plan!, b, 0);
      const shape = override.shape(b.ids.length, b.seqLen);
      const n = shape.reduce((a, x) => a * x, 1);
      feeds[override.name] = new ort.Tensor(override.type as 'float32', override.type === 'float16' ? new Uint16Array(n) : new Float32Array(n), shape);
      feeds[TARGET_INPUT] = new ort.Tensor('int64', new BigInt64Array(b.ids.length).fill(BigInt(FORWARD_ONLY_TARGET)), [b.ids.length]);
      out.push(await session.run(feeds, names));
    }
    return out;
  } finally {
    await session.release();
  }
}

function sameValues(a: ort.Tensor, b: ort.Tensor): boolean {
  if (a.dims.join() !== b.dims.join()) return false;
  const x = a.data as ArrayLike<number>;
  const y = b.data as ArrayLike<number>;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Elements before and after `axis` of a row-major tensor of `dims`. */
export function aroundAxis(dims: readonly number[], axis: number): { outer: number; inner: number } {
  let outer = 1;
  let inner = 1;
  dims.forEach((d, i) => {
    if (i < axis) outer *= d;
    else if (i > axis) inner *= d;
  });
  return { outer, inner };
}

/**
 * The entries of `small` (2 rows) along `axis` equal the first ones of `big` (3 rows, the same
 * two first): within 1e-4 of the scale, as flat-site.ts checks the site itself.
 */
function leadingRowsAgree(small: ort.Tensor, big: ort.Tensor, axis: number): boolean {
  const a = small.data as ArrayLike<number>;
  const b = big.data as ArrayLike<number>;
  const { outer, inner } = aroundAxis(small.dims, axis);
  const n = small.dims[axis] * inner;
  const m = big.dims[axis] * inner;
  let scale = 0;
  let err = 0;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < n; j++) {
      scale = Math.max(scale, Math.abs(a[o * n + j]));
      err = Math.max(err, Math.abs(a[o * n + j] - b[o * m + j]));
    }
  }
  return err <= 1e-4 * Math.max(scale, 1e-30);
}

/**
 * Splits the attribution graph `bytes` (built by graph.ts) at its α-independent prefix. Returns
 * the full graph with the cut tensors as extra outputs (`graph`), the suffix graph (`bytes`) and
 * the cut, or why the split was refused.
 */
export async function splitPrefix(
  bytes: Uint8Array,
  site: { override: string; shape: (rows: number, seq: number) => number[]; type: string; outputs: string[] },
  opts: { externalDataDir?: string; feeds?: FeedBuilder } = {},
): Promise<PrefixSplit> {
  const m = readOnnxModel(bytes);
  const buf = bytes;
  const reads = new Map<NodeInfo, string[]>(m.nodes.map((n) => [n, [...n.inputs.filter(Boolean), ...(n.attributes && Object.values(n.attributes).some((a) => a.type === 'graph') ? subgraphReads(buf, n) : [])]]));
  const initializers = new Set(m.initializers.keys());
  const fed = m.inputs.map((i) => i.name).filter((n) => !initializers.has(n));
  const dynamic = new Set([site.override, TARGET_INPUT]);
  const fromInput = new Set(fed.filter((n) => !dynamic.has(n)));
  const producer = new Map<string, NodeInfo>();
  for (const n of m.nodes) {
    const r = reads.get(n)!;
    if (r.some((i) => dynamic.has(i))) for (const o of n.outputs) if (o) dynamic.add(o);
    if (r.some((i) => fromInput.has(i))) for (const o of n.outputs) if (o) fromInput.add(o);
    for (const o of n.outputs) if (o) producer.set(o, n);
  }
  const candidates = m.nodes.filter((n) => !n.outputs.some((o) => dynamic.has(o)) && n.outputs.some((o) => fromInput.has(o))).flatMap((n) => n.outputs.filter(Boolean));
  const override = { name: site.override, shape: site.shape, type: site.type };
  const [types] = await probeRuns(bytes, candidates, [PROBE_BATCH], override, opts);
  const isFloatOut = (n: NodeInfo) => n.outputs.some((o) => o && FLOAT.has(types[o]?.type ?? ''));

  // Backward from the fetched outputs: a static, input-computed float node ends the walk (its
  // read outputs are cut tensors); any other node joins the suffix.
  const suffix = new Set<NodeInfo>();
  const cutNames = new Set<string>();
  const needed = new Set(site.outputs);
  const graphInputs = new Set<string>();
  for (let k = m.nodes.length - 1; k >= 0; k--) {
    const n = m.nodes[k];
    const wanted = n.outputs.filter((o) => o && needed.has(o));
    if (wanted.length === 0) continue;
    const isStatic = !n.outputs.some((o) => dynamic.has(o));
    if (isStatic && n.outputs.some((o) => fromInput.has(o)) && isFloatOut(n)) {
      for (const o of wanted) cutNames.add(o);
      continue;
    }
    suffix.add(n);
    for (const i of reads.get(n)!) needed.add(i);
  }
  for (const i of fed) if (needed.has(i)) graphInputs.add(i);
  const cut = [...cutNames];
  for (const c of cut) if (!FLOAT.has(types[c]?.type ?? '')) return { refused: `prefix split: cut tensor "${c}" is ${types[c]?.type ?? 'of unknown type'}` };
  if (cut.length === 0) return { refused: 'prefix split: no α-independent prefix computed from the inputs' };

  const [p2, p3, p7] = await probeRuns(bytes, cut, [PROBE_BATCH, BATCH3, BATCH7], override, opts);
  const tensors: CutTensor[] = [];
  for (const name of cut) {
    const d2 = [...p2[name].dims];
    const d3 = [...p3[name].dims];
    const d7 = [...p7[name].dims];
    if (d2.length !== d3.length || d2.length !== d7.length) return { refused: `prefix split: cut tensor "${name}" changes rank with the batch or sequence` };
    const moved = d2.map((d, i) => (d !== d3[i] ? i : -1)).filter((i) => i >= 0);
    let batchAxis: number | null = null;
    let flat = false;
    const ax = moved[0];
    if (moved.length === 1 && d2[ax] === 2 && d3[ax] === 3 && d7[ax] === 2) batchAxis = ax;
    else if (moved.length === 1 && d2[ax] === 2 * 5 && d3[ax] === 3 * 5 && d7[ax] === 2 * 7 && leadingRowsAgree(p2[name], p3[name], ax)) {
      // [batch·sequence, …] in batch-major order: the 3-row probe's first two rows are the 2-row probe's.
      batchAxis = ax;
      flat = true;
    } else if (moved.length > 0) return { refused: `prefix split: cut tensor "${name}" is [${d2.join(', ')}] on 2 rows and [${d3.join(', ')}] on 3: no batch axis whose rows can be told apart` };
    else if (!sameValues(p2[name], p3[name])) return { refused: `prefix split: cut tensor "${name}" has no batch axis but its values change with the batch` };
    tensors.push({ name, type: p2[name].type, batchAxis, ...(flat ? { flat } : {}), dims5: d2, dims7: d7 });
  }
  const suffixBytes = writeSuffix(m, buf, suffix, graphInputs, needed, new Set(site.outputs), tensors);
  const graph = appendGraphOutputs(bytes, cut.map((name) => ({ name })));
  return { bytes: suffixBytes, graph, info: { cut: tensors, prefixNodes: m.nodes.length - suffix.size, suffixNodes: suffix.size, inputs: [...graphInputs] } };
}

/** The graph with only the suffix nodes, the inputs they read, the cut tensors as inputs and `outputs`. */
function writeSuffix(m: OnnxModel, buf: Uint8Array, suffix: Set<NodeInfo>, inputs: Set<string>, read: Set<string>, outputs: Set<string>, cut: CutTensor[]): Uint8Array {
  const keepNode = new Set([...suffix].map((n) => n.range[0]));
  const produced = new Set([...suffix].flatMap((n) => n.outputs));
  // Only the initializers the suffix reads (ORT would drop the others, one warning each).
  const inits = new Set([...m.initializers.keys()].filter((n) => read.has(n)));
  const nameOf = (start: number, end: number, field = 1) => {
    for (const f of fields(buf, start, end)) if (f.field === field) return str(buf, f);
    return '';
  };
  const g = new ProtoWriter();
  for (const [start, end] of m.graphRanges) {
    for (const f of fields(buf, start, end)) {
      if (f.field === 1 && !keepNode.has(f.start)) continue;
      if (f.field === 11) {
        const n = nameOf(f.start, f.end);
        if (!inputs.has(n) && !inits.has(n)) continue;
      }
      if (f.field === 5 && !inits.has(nameOf(f.start, f.end, 8))) continue; // TensorProto.name is field 8
      if (f.field === 12 && !outputs.has(nameOf(f.start, f.end))) continue;
      if (f.field === 13 && !produced.has(nameOf(f.start, f.end))) continue;
      g.raw(buf.subarray(f.fieldStart, f.end));
    }
  }
  for (const c of cut) g.message(11, (w) => encodeRankedValueInfo(w, c.name, ELEM_CODE[c.type], c.dims5.length));
  const w = new ProtoWriter();
  let written = false;
  for (const f of fields(buf, 0, buf.length)) {
    if (f.field !== 7) w.raw(buf.subarray(f.fieldStart, f.end));
    else if (!written) {
      w.bytes(7, g.finish());
      written = true;
    }
  }
  return w.finish();
}

/** Bytes one row adds to a run of S tokens: the fed cut tensors that have a batch axis. */
export function cutRowBytes(cut: CutTensor[], S: number): number {
  let total = 0;
  for (const c of cut) {
    if (c.batchAxis === null) continue;
    let n = 1;
    c.dims5.forEach((d, i) => {
      if (i !== c.batchAxis) n *= d + ((c.dims7[i] - d) / 2) * (S - 5);
      else if (c.flat) n *= S;
    });
    total += n * (c.type === 'float16' || c.type === 'bfloat16' ? 2 : c.type === 'float64' ? 8 : 4);
  }
  return Math.ceil(total);
}

export function refusedSplit(e: unknown): { refused: string } {
  if (e instanceof QuantlensError) return { refused: `prefix split: ${e.message}` };
  return { refused: `prefix split: ${(e as Error).message}` };
}
