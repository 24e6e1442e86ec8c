/**
 * One timed run of a command that streams a model's weights (quantize, convert), measured in its
 * own child process so its peak RSS belongs to it alone: the record both benches report and the
 * two goals they check (issue 12 goal 4, issue 11 part 4: ≥ 100 MB/s of source weights, peak RSS
 * ≤ baseline + 3 × the largest tensor).
 */
import { benchGoal, type BenchGoal } from './lib.ts';

/** What the child prints as its last line: wall seconds, RSS before the first tensor, peak RSS. */
export interface ChildMeasurement {
  seconds: number;
  baselineKB: number;
  maxRssKB: number;
}

export interface StreamingRun {
  seconds: number;
  mbPerSecond: number;
  baselineMB: number;
  peakMB: number;
  /** (peak − baseline) ÷ largest tensor (as float32). */
  rssOverBaselineTensors: number;
  outputMB: number;
}

/** The child's measurement line (the last line of its stdout). */
export function childMeasurement(stdout: string): ChildMeasurement {
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

export function streamingRun(m: ChildMeasurement, sourceMB: number, largestMB: number, outputMB: number): StreamingRun {
  const peakMB = m.maxRssKB / 1024, baselineMB = m.baselineKB / 1024;
  return { seconds: m.seconds, mbPerSecond: sourceMB / m.seconds, baselineMB, peakMB, rssOverBaselineTensors: (peakMB - baselineMB) / largestMB, outputMB };
}

/** The throughput and memory goals of a best run; `names` are the goals' labels as results.json records them. */
export function streamingGoals(r: StreamingRun, names: { throughput: string; memory: string }, throughputDetail: string): BenchGoal[] {
  return [
    benchGoal(names.throughput, r.mbPerSecond, '>=', 100, throughputDetail),
    benchGoal(names.memory, r.rssOverBaselineTensors, '<=', 3, `baseline ${r.baselineMB.toFixed(0)} MB before the first tensor`),
  ];
}
