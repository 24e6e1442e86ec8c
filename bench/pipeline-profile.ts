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

/**
 * The statistics' parts, by the fragment's tensor names (block-moments.ts). `floor` marks the parts
 * for which no cheaper exact form was found (block-moments.ts lists what was measured): the
 * float64 Σx that the mean's brute-force bound (1e-12) needs, whose Cast ORT runs on one thread,
 * and the exact min/max, one reduction each.
 */
const PARTS: [part: string, test: RegExp, floor: boolean][] = [
  ['float64 Σx (Cast, three-step ReduceSum, shift)', /^(x64|sum(\/.*)?|mean64|shift)$/, true],
  ['centred squares (Sub, Mul, block MatMul, float64 sum)', /^(d|d2|s2_blocks|s2_blocks64|s2(\/.*)?)$/, false],
  ['min / max (three-step ReduceMin, ReduceMax)', /^(min|max)(\/.*)?$/, true],
  ['near-zero compares (Greater, Less, And)', /^(above|below|inside)$/, false],
  ['near-zero counts (uint8 Cast, MatMulInteger GEMV)', /^(inside_n|inside_rows|nz_row|near_zero)$/, false],
  ['gather of the real rows', /^(xg|first)$/, false],
];

export interface StatisticsProfile {
  /** Σ over batches of the model's own nodes' kernel milliseconds (min over repeats). */
  modelMs: number;
  /** The same for the fragment's nodes, by part (PARTS, then 'other'). */
  parts: { part: string; ms: number; share: number }[];
  share: number;
  /** The parts marked `floor` in PARTS, as a share of the model's kernel time. */
  floorShare: number;
  repeats: number;
}

export interface ProfileEvent {
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
  return summariseProfile(events, batches.length, repeats);
}

/** Per node, per batch: min over repeats (runs are in order: repeat-major, batch-minor). */
export function summariseProfile(events: ProfileEvent[], batches: number, repeats: number): StatisticsProfile {
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
  const share = parts.reduce((s, p) => s + p.share, 0);
  const floorShare = parts.filter((p) => PARTS.some(([name, , floor]) => floor && name === p.part)).reduce((s, p) => s + p.share, 0);
  return { modelMs, parts, share, floorShare, repeats };
}
