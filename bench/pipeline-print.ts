/** The pipeline section's tables (bench/pipeline.ts): rounds and stage breakdown per model, then the end of a run. */
import { fixed, formatTable, percent } from './lib.ts';
import type { ModelThroughput, ThroughputResult } from './pipeline.ts';

const verdict = (met: boolean) => (met ? 'goal met' : 'GOAL MISSED');

function printModel(m: ModelThroughput, goal: number): void {
  console.log(
    `\n${m.model.label}: hidden ${m.model.hiddenSize}, d_ff ${m.model.intermediateSize}, ${m.model.layers} layers, ${(m.model.parameters / 1e6).toFixed(1)}M parameters, fp32; ` +
      `layers ${m.capturedLayers.join(', ')} captured; measures [${m.measures.join(', ')}] with Parquet sinks; ${m.prompts} synthetic prompts → ${m.batches} batches, ${m.tokens} tokens`,
  );
  console.log(
    formatTable(
      [{ title: 'round' }, { title: 'order' }, { title: 'pipeline tok/s', align: 'right' }, { title: 'bare tok/s', align: 'right' }, { title: 'bare+stats tok/s', align: 'right' }, { title: 'pipeline ÷ bare', align: 'right' }, { title: 'same, CPU time', align: 'right' }],
      m.rounds.map((x, i) => [String(i + 1), x.order.join(' → '), fixed(x.pipelineTokensPerSecond, 0), fixed(x.bareTokensPerSecond, 0), fixed(x.bareStatsTokensPerSecond, 0), fixed(x.ratio, 3), fixed(x.cpuRatio, 3)]),
    ),
  );
  console.log(`median pipeline ÷ bare: ${fixed(m.medianRatio, 3)} (CPU time: ${fixed(m.medianCpuRatio, 3)})   goal ≥ ${goal.toFixed(2)}: ${verdict(m.medianRatio >= goal)}`);
  console.log(`in-graph statistics (the same session with and without them, in loops of the same round): +${percent(m.statsOverhead)} of the bare forward pass's Σ session.run, +${percent(m.statsCpuOverhead)} of its CPU time (medians of rounds)`);
  const s = m.stages;
  const st = s.streamSeconds;
  const row = (name: string, sec: number) => [name, fixed(sec, 2), percent(sec / st)];
  console.log(`where the time goes (separate run, one batch in flight, stages timed at the graph's boundaries: ${fixed(s.tokensPerSecond, 0)} tok/s)`);
  console.log(
    formatTable(
      [{ title: 'stage' }, { title: 'seconds', align: 'right' }, { title: 'share of stream', align: 'right' }],
      [
        row('read dataset', s.seconds.read),
        row('prompt template', s.seconds.prompt),
        row('tokenize', s.seconds.tokenize),
        row('batch (length windows)', s.seconds.batch),
        row('session.run (forward + in-graph statistics)', s.seconds.sessionRun),
        row('  of which the statistics (bare loops above)', s.seconds.sessionRun * (m.statsOverhead / (1 + m.statsOverhead))),
        row('feeds and output decoding (infer stage, JS)', s.seconds.inferJs),
        row('measures: scoring, estimators, predictions Parquet, checkpoint', s.seconds.measures),
        row('rxjs / pull scheduling (the rest)', s.seconds.other),
        ['= streaming wall time', fixed(st, 2), '100.0 %'],
        ['end of run (close, tables, calibration, summary)', fixed(s.endOfRunSeconds, 2), '(after stream)'],
      ],
    ),
  );
  printStatsProfile(m, goal);
}

function printStatsProfile(m: ModelThroughput, goal: number): void {
  const p = m.statsProfile;
  console.log(`the statistics by part (ORT's profile of the pipeline's session, each node's min over ${p.repeats} repeats per batch), as shares of the model's own kernel time (${fixed(p.modelMs / 1000, 2)} s):`);
  console.log(
    formatTable(
      [{ title: 'part' }, { title: 'ms', align: 'right' }, { title: 'share of model', align: 'right' }],
      [...p.parts.map((x) => [x.part, fixed(x.ms, 1), percent(x.share, 2)]), ['= all statistics', fixed(p.parts.reduce((a, x) => a + x.ms, 0), 1), percent(p.share, 2)]],
    ),
  );
  console.log(
    `a pipeline ÷ bare of ${goal.toFixed(2)} leaves ${percent(1 / goal - 1, 1)} of bare's time for all the pipeline adds; the float64 Σx and min / max alone take ${percent(p.floorShare, 2)} ` +
      `of the model's kernel time here (no cheaper exact form found: onnx/block-moments.ts)`,
  );
}

export function printThroughput(r: ThroughputResult): void {
  console.log(`\n== 1. Pipeline throughput vs a bare session.run loop ${'='.repeat(24)}`);
  for (const m of r.models) printModel(m, r.goal);
  const e = r.endOfRun;
  console.log('\nend of a run vs prompts (tiny demo model, predictions + neurons + dead):');
  console.log(
    formatTable(
      [{ title: 'prompts', align: 'right' }, { title: 'stream s', align: 'right' }, { title: 'end of run s', align: 'right' }, { title: 'share', align: 'right' }],
      e.points.map((p) => [p.prompts.toLocaleString('en'), fixed(p.streamSeconds, 1), fixed(p.endSeconds, 2), percent(p.endSeconds / p.streamSeconds)]),
    ),
  );
  console.log(`end of run at 100k prompts: ${percent(e.shareAt100k, 2)} of the stream (${e.goal.detail})   goal ≤ 2 %: ${verdict(e.goal.met)}`);
  console.log('onnxruntime-node runs session.run synchronously on the main thread (inside a setImmediate), so no JS overlaps inference.');
}
