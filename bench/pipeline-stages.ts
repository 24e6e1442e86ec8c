/**
 * Where a pipeline run's streaming time goes, by stage, from one run with a StageClock
 * (operators/stage-clock.ts) and one batch in flight: iterator stages (read, prompt, tokenize,
 * batch) timed inside their next(), then `tap` marks after pull, after inference and after the
 * measures consumed the batch. session.run seconds come from the runner itself (onBatch), so the
 * inference stage splits into ORT and the JS around it (feeds, output decoding).
 */
import { runPipeline } from '../pipelines/run.ts';
import type { PipelineConfig } from '../pipelines/schema.ts';
import { StageClock } from '../operators/stage-clock.ts';

export interface StageBreakdown {
  /** Streaming wall seconds of this run (summary.wall_seconds) and its tokens/s. */
  streamSeconds: number;
  tokensPerSecond: number;
  /** Seconds per stage; they sum to streamSeconds up to `other`. */
  seconds: { read: number; prompt: number; tokenize: number; batch: number; sessionRun: number; inferJs: number; measures: number; other: number };
  /** After the last batch: close predictions, tables, calibration, summary.json. */
  endOfRunSeconds: number;
}

export async function stageBreakdown(cfg: PipelineConfig): Promise<StageBreakdown> {
  const clock = new StageClock();
  let sessionRun = 0;
  let lastBatchAt = 0;
  const { summary } = await runPipeline(cfg, {
    quiet: true,
    report: false,
    log: () => undefined,
    clock: { clock, inFlight: 1 },
    onBatch: (r) => {
      for (const o of r.outputs) sessionRun += o.seconds;
      lastBatchAt = performance.now();
    },
  });
  const end = performance.now();
  const it = (k: string) => (clock.iteratorMs.get(k) ?? 0) / 1000;
  const infer = clock.between('pulled', 'inferred') / 1000;
  const measures = clock.between('inferred', 'consumed') / 1000;
  const seconds = {
    read: it('read'),
    prompt: it('prompt') - it('read'),
    tokenize: it('tokenize') - it('prompt'),
    batch: it('batch') - it('tokenize'),
    sessionRun,
    inferJs: infer - sessionRun,
    measures,
    other: 0,
  };
  const stream = summary.wall_seconds as number;
  seconds.other = stream - it('batch') - infer - measures;
  return { streamSeconds: stream, tokensPerSecond: summary.tokens_per_second, seconds, endOfRunSeconds: (end - lastBatchAt) / 1000 };
}
