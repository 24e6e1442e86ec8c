/**
 * The end of a run (close predictions.parquet, written during the stream beside the checkpoint
 * parts; estimator tables; calibration from predictions.parquet with its bootstrap;
 * summary.json) against the streaming time, on the tiny demo model with
 * predictions + neurons + dead. Measured at several prompt counts; the goal is at 100k
 * prompts, so when the largest size run is smaller the share at 100k is extrapolated from a
 * least-squares line through (prompts, end-of-run seconds) and (prompts, stream seconds), and
 * the goal says so.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { runPipeline } from '../pipelines/run.ts';
import { benchConfig } from './bench-config.ts';
import { benchGoal, writeSyntheticJsonl, type BenchGoal } from './lib.ts';

export const END_OF_RUN_GOAL = 0.02;
const AT = 100_000;

export interface EndOfRunPoint {
  prompts: number;
  streamSeconds: number;
  endSeconds: number;
}

export interface EndOfRunResult {
  points: EndOfRunPoint[];
  /** End of run ÷ stream time at 100k prompts: measured when a point is at 100k, else extrapolated. */
  shareAt100k: number;
  extrapolated: boolean;
  goal: BenchGoal;
}

/** Least-squares line y = a + b·x. */
function fitLine(xs: number[], ys: number[]): { a: number; b: number } {
  const n = xs.length;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
  }
  const b = sxx > 0 ? sxy / sxx : 0;
  return { a: my - b * mx, b };
}

export async function benchEndOfRun(opts: { sizes: number[]; tmpDir: string; log?: (l: string) => void }): Promise<EndOfRunResult> {
  const points: EndOfRunPoint[] = [];
  for (const prompts of opts.sizes) {
    const dataset = path.join(opts.tmpDir, `end-of-run-${prompts}.jsonl`);
    await writeSyntheticJsonl(dataset, prompts, { minWords: 3, maxWords: 8, seed: 3 });
    const output = path.join(opts.tmpDir, 'out-end-of-run');
    rmSync(output, { recursive: true, force: true });
    const cfg = benchConfig({ model: 'demo', dataset, output, measure: ['predictions', 'neurons', 'dead'] }, path.join(opts.tmpDir, 'end-of-run.yaml'));
    let lastBatchAt = 0;
    const { summary } = await runPipeline(cfg, { quiet: true, report: false, log: () => undefined, onBatch: () => void (lastBatchAt = performance.now()) });
    const endSeconds = (performance.now() - lastBatchAt) / 1000;
    rmSync(output, { recursive: true, force: true });
    points.push({ prompts, streamSeconds: summary.wall_seconds, endSeconds });
    opts.log?.(`end of run, tiny demo model, ${prompts} prompts: stream ${summary.wall_seconds.toFixed(1)} s, end ${endSeconds.toFixed(2)} s`);
  }
  const at = points.find((p) => p.prompts === AT);
  const extrapolated = !at;
  let share: number;
  if (at) share = at.endSeconds / at.streamSeconds;
  else {
    const xs = points.map((p) => p.prompts);
    const end = fitLine(xs, points.map((p) => p.endSeconds));
    const stream = fitLine(xs, points.map((p) => p.streamSeconds));
    share = (end.a + end.b * AT) / (stream.a + stream.b * AT);
  }
  const detail = extrapolated ? `extrapolated to 100k from ${points.map((p) => p.prompts).join(' / ')} prompts (least-squares lines)` : 'measured at 100k prompts';
  return { points, shareAt100k: share, extrapolated, goal: benchGoal('end of run ÷ stream time at 100k prompts, tiny demo model', share, '<=', END_OF_RUN_GOAL, detail) };
}
