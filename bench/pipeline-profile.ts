/**
 * Where the in-graph statistics' time goes, part by part, from ORT's own profile: the pipeline's
 * session (the model plus onnx/block-moments.ts) rebuilt with enableProfiling, run over the
 * bench's batches a few times. Each node's kernel time is its minimum over the repeats of the same
 * batch (a shared machine's load only ever adds time), summed over batches; the parts are shares
 * of the model's own nodes' time. Fragment nodes are named after their outputs
 * (quantlens/bm_<site>/<tensor>), which is how a node is assigned to its part.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { augmentForRun, LAST_INDEX, LAST_LOGITS } from '../onnx/augment.ts';
import { defaultOpset, readOnnxModel } from '../onnx/model-reader.ts';
import { sessionOptions } from '../onnx/session.ts';
import type { Plan } from '../pipelines/plan.ts';
import type { Batch } from '../core/types.ts';
import { batchFeeds } from '../operators/infer.ts';

/** The statistics' parts, by the fragment's tensor names (block-moments.ts). */
const PARTS: [part: string, test: RegExp][] = [
  ['float64 Σx (Cast, three-step ReduceSum, shift)', /^(x64|sum(\/.*)?|mean64|shift)$/],
  ['centred squares (Sub, Mul, block MatMul, float64 sum)', /^(d|d2|s2_blocks|s2_blocks64|s2(\/.*)?)$/],
  ['min / max (three-step ReduceMin, ReduceMax)', /^(min|max)(\/.*)?$/],
  ['near-zero compares (Greater, Less, And)', /^(above|below|inside)$/],
  ['near-zero counts (uint8 Cast, MatMulInteger GEMV)', /^(inside_n|inside_rows|nz_row|near_zero)$/],
  ['gather of the real rows', /^(xg|first)$/],
];

export interface StatisticsProfile {
  /** Σ over batches of the model's own nodes' kernel milliseconds (min over repeats). */
  modelMs: number;
  /** The same for the fragment's nodes, by part (PARTS, then 'other'). */
  parts: { part: string; ms: number; share: number }[];
  share: number;
  repeats: number;
}

interface ProfileEvent {
  cat?: string;
  name: string;
  ts: number;
  dur: number;
}

/** Profile the stats plan's fp32 session over `batches`, `repeats` times each. */
export async function profileStatistics(plan: Plan, batches: Batch[], tmpDir: string, repeats = 3): Promise<StatisticsProfile> {
  const runner = plan.runners[0];
  const file = plan.precisions[0].path;
  const graph = readOnnxModel(file);
  const opset = defaultOpset(graph);
  graph.source.close();
  const tensors = plan.sites.map((s) => ({ name: s.capture ?? s.tensor, width: s.width! }));
  const bytes = augmentForRun(readFileSync(file), { captures: [], moments: { tensors, opset }, gatherLast: runner.session.inputNames.includes(LAST_INDEX) });
  const prefix = path.join(tmpDir, 'stats-profile');
  const session = await ort.InferenceSession.create(bytes, { ...sessionOptions(plan.session), enableProfiling: true, profileFilePrefix: prefix });
  const feeds = batches.map((b) => batchFeeds(runner, b, plan.tokenizer.padId));
  const fetches = [LAST_LOGITS, ...(runner.moments?.fetches() ?? [])];
  for (let r = 0; r < repeats; r++) for (const f of feeds) await session.run(f, fetches);
  session.endProfiling();
  await session.release();
  const written = readdirSync(tmpDir).filter((n) => n.startsWith('stats-profile') && n.endsWith('.json'));
  if (written.length !== 1) throw new Error(`ORT profile: expected one stats-profile*.json in ${tmpDir}, found ${written.length}`);
  const events = JSON.parse(readFileSync(path.join(tmpDir, written[0]), 'utf8')) as ProfileEvent[];
  rmSync(path.join(tmpDir, written[0]));
  return summarise(events, batches.length, repeats);
}

/** Per node, per batch: min over repeats (runs are in order: repeat-major, batch-minor). */
function summarise(events: ProfileEvent[], batches: number, repeats: number): StatisticsProfile {
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time')).sort((a, b) => a.ts - b.ts);
  const times = new Map<string, number[][]>();
  let r = 0;
  for (const e of nodes) {
    while (r < runs.length - 1 && e.ts > runs[r].ts + runs[r].dur) r++;
    const name = e.name.slice(0, -'_kernel_time'.length);
    const perBatch = times.get(name) ?? [];
    times.set(name, perBatch);
    (perBatch[r % batches] ??= []).push(e.dur);
  }
  let modelMs = 0;
  const ms = new Map<string, number>();
  for (const [name, perBatch] of times) {
    const t = perBatch.reduce((s, xs) => s + Math.min(...xs), 0) / 1000;
    const m = /^quantlens\/bm_\d+\/(.+)$/.exec(name);
    if (!m) {
      if (!name.startsWith('quantlens/')) modelMs += t;
      continue;
    }
    const part = PARTS.find(([, test]) => test.test(m[1]))?.[0] ?? 'other (reshapes, casts of small tensors)';
    ms.set(part, (ms.get(part) ?? 0) + t);
  }
  const parts = [...ms].map(([part, t]) => ({ part, ms: t, share: t / modelMs })).sort((a, b) => b.ms - a.ms);
  return { modelMs, parts, share: parts.reduce((s, p) => s + p.share, 0), repeats };
}
