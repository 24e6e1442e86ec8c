/**
 * LIG throughput against its FLOP bound, on stories260K-onnx (when ../shared is there) and on the
 * demo `bench` model (hidden 256, d_ff 1024, 4 layers; generated, always there), fp32 on CPU,
 * at layer 0 (backward through every layer) and layer 2 (the middle); and at scale on the ~0.1B
 * seeded Llama of bench/scale.ts (hidden 768, d_ff 2048, 8 layers, vocab 32000; generated once
 * under the OS temp folder by bench/scale-child.ts), layer 0, 2 prompts, 8 steps (the scale
 * bench's salience settings), where the same run also times the graph without the last-position
 * tail (onnx/backward/last-position.ts: LM head at every position, as before) for a before/after.
 *
 * An example of T tokens at S steps costs about 3·S·T token-forwards (forward + backward ≈ 3×
 * forward), so the bound is bare forward tokens/s ÷ (3·S·T) examples/s, with the bare forward
 * measured on the same model in the same run at the batch shape attribution runs (S + 2 rows of
 * T tokens). Reported: examples/s at batch 1 (one example per call), grouped by length over
 * mixed-length prompts (what `measure: salience` does), and over equal-length prompts (one group),
 * each ÷ the bound; plus where the time goes (session.run of the integrand rows, of the
 * activation/top-1 runs, and the rest: JS interpolation and accumulation) and the graph build
 * against a cache load (operators/attribution/graph-cache.ts). Every model also alternates rounds of
 * the grouped mixed mode on this graph and on the graph without the backward branch
 * (onnx/backward/backward-branch.ts: every run, the activation and top-1 ones too, ran the reverse
 * sweep), and the same graph with ORT prepacking off (the sessions here prepack, as a pipeline does
 * when its budget holds the packed copy), for a before/after in one run; and alternates that one session (every
 * thread) with worker sessions of 1 thread each (operators/attribution/lig-parallel.ts, one per
 * thread, at least 2), examples/s both ways. With QUANTLENS_BENCH_OUT set
 * (bench/run.ts does), the results are written there as JSON for runs/bench/results.json.
 *
 *   node --import tsx bench/attribution.ts [examples=8] [steps=50]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { loadTokenizer } from '../sources/tokenizer.ts';
import { ensureDemoModel } from '../sources/demo/demo-model.ts';
import { buildFeeds, planInputs } from '../onnx/feeds.ts';
import { createSession, defaultSessionSettings } from '../onnx/session.ts';
import { gradName } from '../onnx/backward/graph.ts';
import { attributeExample, createAttributionSession, releaseAttributionSession, type AttributionSession } from '../operators/attribution/lig.ts';
import { attributeByLength } from '../operators/attribution/lig.ts';
import { ParallelAttribution, threadsPerWorker } from '../operators/attribution/lig-parallel.ts';
import { benchGoal, fixed, formatTable, median } from './lib.ts';
import { SCALE_SIZES } from './scale.ts';

const SHARED = path.resolve(import.meta.dirname, '..', '..', 'shared');
const N = Number(process.argv[2] ?? 8);
const STEPS = Number(process.argv[3] ?? 50);
const GOAL = 0.7;
const QUESTIONS = [
  'do iran and afghanistan speak the same language',
  'do good samaritan laws protect those who help at an accident',
  'is windows movie maker part of windows essentials',
  'is confectionary sugar the same as powdered sugar',
  'is elder scrolls online the same as skyrim',
  'can you use oyster card at epsom station',
  "will there be a season 4 of da vinci's demons",
  'is the federal court the same as the supreme court',
];

interface Timed {
  examplesPerSecond: number;
  ratio: number;
  /** Bare forward tokens/s measured just before and just after this mode; the bound uses their mean. */
  bareTokensPerSecond: [number, number];
  seconds: number;
  /** Σ session.run of integrand rows (objective + gradient fetched). */
  integrandRunSeconds: number;
  /** Σ session.run of the activation and top-1 runs. */
  otherRunSeconds: number;
}

interface ModelResult {
  model: string;
  layer: string;
  steps: number;
  examples: number;
  meanTokens: number;
  width: number;
  vocab: number;
  buildSeconds: number;
  cacheLoadSeconds: number;
  /** Median of the bare forward measurements around the modes. */
  bareTokensPerSecond: number;
  batch1: Timed;
  groupedMixed: Timed;
  groupedEqual: Timed;
  /** Grouped by length (mixed) on the graph without the last-position tail, when compared. */
  groupedMixedFullHead?: Timed;
  /**
   * Grouped by length (mixed), in alternating rounds: this graph (the reverse sweep behind
   * If(backward), skipped by the activation and top-1 runs) and the graph without the branch
   * (every run runs the backward nodes, as before onnx/backward/backward-branch.ts).
   */
  branchRounds: Timed[];
  noBranchRounds: Timed[];
  /** Grouped by length (mixed), alternating with branchRounds: the same graph with ORT prepacking off (the mapped weights only; what a pipeline whose budget lacks the packed copy runs). */
  unpackedRounds: Timed[];
  /**
   * Grouped by length (mixed), in alternating rounds: one session with every thread (as above) and
   * `workers` worker sessions of 1 thread each (operators/attribution/lig-parallel.ts, what
   * `measure: salience` runs when the rule or salience.workers picks workers).
   */
  workers: number;
  oneSessionRounds: Timed[];
  workerRounds: Timed[];
  /** Grouped by length (mixed), alternating with branchRounds: the same graph without the prefix split (every integrand row runs the full graph, as before onnx/backward/prefix-split.ts). */
  noPrefixRounds: Timed[];
  /** The split of this graph: nodes in the prefix / suffix, cut tensors; or why there is none. */
  prefix: { prefixNodes: number; suffixNodes: number; cut: number } | { refused: string };
  pathNodes: number;
  tailNodes: number;
  completenessMedian: number;
}

interface BenchSettings {
  examples: number;
  steps: number;
  /** Also time the graph whose LM head runs at every position (lastPosition: false). */
  compareFullHead?: boolean;
}

/** Σ seconds of the attribution session's runs by kind (wraps this instance's run, not the prototype). */
function timeRuns(s: AttributionSession): { integrand: number; other: number; restore: () => void } {
  const acc = { integrand: 0, other: 0, restore: () => undefined as void };
  const grad = gradName(s.tensor);
  // The full graph's session and, with a prefix split, the suffix's (which runs the integrand rows).
  const restores = [s.session, ...(s.prefix ? [s.prefix.session] : [])].map((x) => {
    const session = x as ort.InferenceSession & { run: ort.InferenceSession['run'] };
    const original = session.run.bind(session);
    session.run = (async (feeds: ort.InferenceSession.FeedsType, fetches?: unknown) => {
      const t0 = performance.now();
      const out = await original(feeds, fetches as string[]);
      const dt = (performance.now() - t0) / 1000;
      if (Array.isArray(fetches) && fetches.includes(grad)) acc.integrand += dt;
      else acc.other += dt;
      return out;
    }) as ort.InferenceSession['run'];
    return () => {
      session.run = original;
    };
  });
  acc.restore = () => restores.forEach((r) => r());
  return acc;
}

/**
 * A bare forward of the plain model on `rows` copies of ids: measure() gives the median tokens/s
 * of timed runs (≥ 3, about 1 s in all); release() frees the session.
 */
async function bareForward(modelPath: string, ids: Int32Array, rows: number): Promise<{ measure: () => Promise<number>; release: () => Promise<void> }> {
  const session = await createSession(modelPath, defaultSessionSettings());
  const feeds = buildFeeds(planInputs(session), { seqLen: ids.length, lengths: new Int32Array(rows).fill(ids.length), ids: new Array(rows).fill(ids) }, 0);
  await session.run(feeds, ['logits']);
  const measure = async () => {
    const rates: number[] = [];
    const until = performance.now() + 1000;
    while (rates.length < 3 || (performance.now() < until && rates.length < 50)) {
      const t0 = performance.now();
      await session.run(feeds, ['logits']);
      rates.push((rows * ids.length) / ((performance.now() - t0) / 1000));
    }
    return median(rates);
  };
  return { measure, release: () => session.release() };
}

/**
 * Examples/s of `run` (which returns how many examples it attributed), with its session.run split,
 * against the bound from a bare forward measured right before and right after it (the machine's
 * load drifts; the mean of the two brackets the mode).
 */
async function timed(s: AttributionSession, bare: () => Promise<number>, cost: number, run: () => Promise<number>): Promise<Timed> {
  const before = await bare();
  const acc = timeRuns(s);
  const t0 = performance.now();
  const n = await run();
  const seconds = (performance.now() - t0) / 1000;
  acc.restore();
  const after = await bare();
  const eps = n / seconds;
  const bound = (before + after) / 2 / cost;
  return { examplesPerSecond: eps, ratio: eps / bound, bareTokensPerSecond: [before, after], seconds, integrandRunSeconds: acc.integrand, otherRunSeconds: acc.other };
}

async function benchModel(name: string, dir: string, layer: number, b: BenchSettings = { examples: N, steps: STEPS }): Promise<ModelResult> {
  const { examples: N, steps: STEPS } = b;
  const modelPath = path.join(dir, 'model.onnx');
  const tensor = `/model/layers.${layer}/mlp/act_fn/Mul_output_0`;
  const tok = await loadTokenizer(dir);
  const mixed = Array.from({ length: N }, (_, i) => ({ ids: tok.encode(`Respond with True or False only.\n${QUESTIONS[i % QUESTIONS.length]}\nAnswer:`) }));
  const T = Math.round(mixed.reduce((a, e) => a + e.ids.length, 0) / N);
  // Equal length: every prompt cut (or padded with its own tokens) to T tokens, BOS kept.
  const equal = mixed.map((e) => ({ ids: Int32Array.from({ length: T }, (_, j) => e.ids[j % e.ids.length]) }));
  const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'quantlens-bench-graphs-'));
  try {
    let t0 = performance.now();
    // Prepacked, as a pipeline runs when its budget holds the packed copy (pipelines/budget.ts).
    const built = await createAttributionSession(modelPath, tensor, { cacheDir, prepack: true });
    const buildSeconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const s = await createAttributionSession(modelPath, tensor, { cacheDir, prepack: true });
    const cacheLoadSeconds = (performance.now() - t0) / 1000;
    if (s.graphCache !== 'hit') throw new Error(`graph cache: expected a hit, got ${s.graphCache}`);
    await releaseAttributionSession(built);
    const plain = await bareForward(modelPath, equal[0].ids, STEPS + 2);
    const bare = plain.measure;
    const cost = 3 * STEPS * T;
    const opts = { steps: STEPS, onWarning: () => {} };
    await attributeExample(s, mixed[0], tensor, { ...opts, steps: 2 }); // warm-up
    const errs: number[] = [];
    const batch1 = await timed(s, bare, cost, async () => {
      for (const e of mixed) errs.push((await attributeExample(s, e, tensor, opts)).completenessError);
      return mixed.length;
    });
    const groupedMixed = await timed(s, bare, cost, async () => (await attributeByLength(s, mixed, tensor, opts)).length);
    const groupedEqual = await timed(s, bare, cost, async () => (await attributeByLength(s, equal, tensor, opts)).length);
    const groupedMixedFullHead = b.compareFullHead ? await timedVariant(modelPath, tensor, cacheDir, bare, cost, mixed, opts, { lastPosition: false }) : undefined;
    // Rounds alternate (now, no prefix split, no branch, unpacked, now, …): the machine's load drifts.
    const noBranch: Timed[] = [];
    const unpacked: Timed[] = [];
    const noPrefix: Timed[] = [];
    const branch: Timed[] = [groupedMixed];
    for (let round = 0; round < 2; round++) {
      noPrefix.push(await timedVariant(modelPath, tensor, cacheDir, bare, cost, mixed, opts, { prefix: false }));
      noBranch.push(await timedVariant(modelPath, tensor, cacheDir, bare, cost, mixed, opts, { backwardBranch: false }));
      unpacked.push(await timedVariant(modelPath, tensor, cacheDir, bare, cost, mixed, opts, { prepack: false }));
      if (round === 0) branch.push(await timed(s, bare, cost, async () => (await attributeByLength(s, mixed, tensor, opts)).length));
    }
    // One session (all threads) against N worker sessions × 1 thread, alternating (3 rounds each).
    const threads = defaultSessionSettings().intraOpThreads;
    const workers = Math.max(2, threads);
    const pool = await ParallelAttribution.start({ model: modelPath, tensor, options: { cacheDir, prepack: true, settings: { ...defaultSessionSettings(), intraOpThreads: threadsPerWorker(threads, workers) } }, warmUp: true }, workers);
    const oneSession: Timed[] = [];
    const onWorkers: Timed[] = [];
    try {
      // One untimed pass: the worker sessions meet these shapes for the first time (ORT allocates per
      // shape), as `s` did in the modes above; the first timed round ran at ~0.5–0.85× without it.
      await pool.attribute(mixed, tensor, opts);
      for (let round = 0; round < 3; round++) {
        oneSession.push(await timed(s, bare, cost, async () => (await attributeByLength(s, mixed, tensor, opts)).length));
        onWorkers.push(await timedOnWorkers(pool, bare, cost, mixed, tensor, opts));
      }
    } finally {
      await pool.release();
    }
    const prefix = s.prefix ? { prefixNodes: s.prefix.prefixNodes, suffixNodes: s.prefix.suffixNodes, cut: s.prefix.cut.length } : { refused: s.prefixRefused ?? '?' };
    await releaseAttributionSession(s);
    await plain.release();
    return {
      model: name, layer: tensor, steps: STEPS, examples: N, meanTokens: T, width: s.width, vocab: s.vocab, buildSeconds, cacheLoadSeconds,
      bareTokensPerSecond: median([batch1, groupedMixed, groupedEqual].flatMap((t) => t.bareTokensPerSecond)),
      batch1, groupedMixed, groupedEqual, groupedMixedFullHead, branchRounds: branch, noBranchRounds: noBranch, unpackedRounds: unpacked, noPrefixRounds: noPrefix, prefix, pathNodes: s.pathNodes, workers, oneSessionRounds: oneSession, workerRounds: onWorkers, tailNodes: s.tailNodes,
      completenessMedian: median(errs),
    };
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

/** groupedMixed on the worker sessions: wall time only (their session.run calls are in other threads: the split columns read NaN). */
async function timedOnWorkers(pool: ParallelAttribution, bare: () => Promise<number>, cost: number, mixed: { ids: Int32Array }[], tensor: string, opts: { steps: number; onWarning: () => void }): Promise<Timed> {
  const before = await bare();
  const t0 = performance.now();
  const n = (await pool.attribute(mixed, tensor, opts)).length;
  const seconds = (performance.now() - t0) / 1000;
  const after = await bare();
  const eps = n / seconds;
  return { examplesPerSecond: eps, ratio: eps / ((before + after) / 2 / cost), bareTokensPerSecond: [before, after], seconds, integrandRunSeconds: NaN, otherRunSeconds: NaN };
}

/** groupedMixed on another build of the graph (without the last-position tail, or without the backward branch: the graphs before each existed), or with prepacking off. */
async function timedVariant(modelPath: string, tensor: string, cacheDir: string, bare: () => Promise<number>, cost: number, mixed: { ids: Int32Array }[], opts: { steps: number }, variant: { lastPosition?: boolean; backwardBranch?: boolean; prepack?: boolean; prefix?: boolean }): Promise<Timed> {
  const full = await createAttributionSession(modelPath, tensor, { cacheDir, prepack: true, ...variant });
  try {
    return await timed(full, bare, cost, async () => (await attributeByLength(full, mixed, tensor, { ...opts, onWarning: () => {} })).length);
  } finally {
    await releaseAttributionSession(full);
  }
}

/** The ~0.1B seeded Llama of bench/scale.ts, generated once (bench/scale-child.ts generate). */
function scaleModel(): string {
  const work = path.join(os.tmpdir(), 'quantlens-bench-0.1B');
  const dir = path.join(work, 'model');
  if (existsSync(path.join(dir, 'model.onnx'))) return dir;
  mkdirSync(work, { recursive: true });
  writeFileSync(path.join(work, 'config.json'), JSON.stringify(SCALE_SIZES['0.1B']));
  const child = path.join(import.meta.dirname, 'scale-child.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', child, 'generate', dir, path.join(work, 'config.json')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`generating the 0.1B model failed (exit ${r.status})`);
  return dir;
}

function print(r: ModelResult): void {
  console.log(`\n${r.model}: ${r.layer} (width ${r.width}, vocab ${r.vocab}), ${r.steps} steps, ${r.examples} prompts of ${r.meanTokens} tokens on average`);
  console.log(`graph: built in ${fixed(r.buildSeconds, 2)} s, loaded from the cache in ${fixed(r.cacheLoadSeconds, 2)} s`);
  const cost = 3 * r.steps * r.meanTokens;
  console.log(`bare forward at ${r.steps + 2} rows × ${r.meanTokens} tokens: median ${fixed(r.bareTokensPerSecond, 0)} tokens/s → bound ${fixed(r.bareTokensPerSecond / cost, 2)} examples/s (3·S·T = ${cost} token-forwards each); each mode is compared with the bare forward measured right before and after it`);
  const row = (what: string, t: Timed) => {
    const rest = t.seconds - t.integrandRunSeconds - t.otherRunSeconds;
    return [what, fixed(t.examplesPerSecond, 2), t.bareTokensPerSecond.map((x) => fixed(x, 0)).join(' / '), fixed(t.ratio, 3), t.ratio >= GOAL ? 'met' : 'MISSED', Number.isNaN(rest) ? '(runs in the workers)' : `${fixed((100 * t.integrandRunSeconds) / t.seconds, 0)} / ${fixed((100 * t.otherRunSeconds) / t.seconds, 0)} / ${fixed((100 * rest) / t.seconds, 0)} %`];
  };
  console.log(
    formatTable(
      [{ title: 'mode' }, { title: 'examples/s', align: 'right' }, { title: 'bare tok/s before / after', align: 'right' }, { title: '÷ bound', align: 'right' }, { title: `goal ≥ ${GOAL}` }, { title: 'integrand runs / act+top-1 runs / JS', align: 'right' }],
      [
        row('batch 1 (one example per call)', r.batch1),
        row('grouped by length, mixed lengths', r.groupedMixed),
        row('grouped by length, equal lengths (one group)', r.groupedEqual),
        ...(r.groupedMixedFullHead ? [row('grouped, mixed, LM head at every position (before)', r.groupedMixedFullHead)] : []),
        ...r.oneSessionRounds.flatMap((t, k) => [row(`round ${k + 1}: grouped, mixed, one session`, t), row(`round ${k + 1}: grouped, mixed, ${r.workers} worker sessions × 1 thread`, r.workerRounds[k])]),
        ...r.branchRounds.flatMap((t, k) => [row(`round ${k + 1}: grouped, mixed, prefix split + backward branch (now)`, t), row(`round ${k + 1}: grouped, mixed, no prefix split (full graph per row)`, r.noPrefixRounds[k]), row(`round ${k + 1}: grouped, mixed, neither (backward on every run)`, r.noBranchRounds[k]), row(`round ${k + 1}: grouped, mixed, prepacking off`, r.unpackedRounds[k])]),
      ],
    ),
  );
  const eps = (ts: Timed[]) => median(ts.map((t) => t.examplesPerSecond));
  const other = (ts: Timed[]) => median(ts.map((t) => t.otherRunSeconds / t.seconds));
  const split = 'refused' in r.prefix ? `none (${r.prefix.refused})` : `${r.prefix.prefixNodes} prefix / ${r.prefix.suffixNodes} suffix nodes, ${r.prefix.cut} cut tensors`;
  console.log(`graph: ${r.pathNodes} path nodes; prefix split: ${split}`);
  // Without a split both kinds of rounds run the same graph: their ratio is the machine's noise.
  console.log(`prefix split: examples/s ${fixed(eps(r.branchRounds) / eps(r.noPrefixRounds), 3)} × the full graph per row (median of rounds)${'refused' in r.prefix ? ' — no split on this graph, so both ran the full graph: the ratio is run-to-run noise' : ''}`);
  console.log(`backward branch: examples/s ${fixed(eps(r.noPrefixRounds) / eps(r.noBranchRounds), 3)} × the graph without it (both without the prefix split; median of rounds); activation + top-1 runs ${fixed(100 * other(r.noPrefixRounds), 1)} % of the time (was ${fixed(100 * other(r.noBranchRounds), 1)} %)`);
  const packing = eps(r.branchRounds) / eps(r.unpackedRounds);
  console.log(`prepacked weights: examples/s ${fixed(packing, 3)} × the same graph with prepacking off (median of rounds)`);
  const ratios = r.workerRounds.map((t, k) => t.examplesPerSecond / r.oneSessionRounds[k].examplesPerSecond);
  console.log(`worker sessions: ${r.workers} × 1 thread: ${fixed(eps(r.workerRounds), 2)} examples/s against one session's ${fixed(eps(r.oneSessionRounds), 2)}: ${fixed(eps(r.workerRounds) / eps(r.oneSessionRounds), 3)} × (medians of ${ratios.length} alternating rounds; per round ${ratios.map((x) => fixed(x, 2)).join(', ')})`);
  console.log(`completeness error median (batch 1): ${r.completenessMedian.toExponential(2)}; last-position tail: ${r.tailNodes} nodes`);
}

async function main(): Promise<void> {
  console.log(`LIG vs its FLOP bound, fp32 on CPU (default threads), ${N} prompts, ${STEPS} steps`);
  const results: ModelResult[] = [];
  const stories = path.join(SHARED, 'models/stories260K-onnx');
  // Layer 0: the backward runs through every layer (3·S·T is about right); the middle layer's
  // backward stops halfway, so it runs faster than the bound assumes.
  for (const layer of [0, 2]) {
    if (existsSync(stories)) results.push(await benchModel('stories260K-onnx', stories, layer));
    else if (layer === 0) console.log(`(stories260K skipped: ${stories} is absent)`);
    results.push(await benchModel('demo bench model (random weights)', await ensureDemoModel({ size: 'bench' }), layer));
  }
  if (!process.env.QUANTLENS_BENCH_NO_SCALE) results.push(await benchModel('~0.1B seeded Llama (bench/scale.ts)', scaleModel(), 0, { examples: 2, steps: 8, compareFullHead: true }));
  for (const r of results) print(r);
  const out = process.env.QUANTLENS_BENCH_OUT;
  const goals = results.flatMap((r) =>
    (['batch1', 'groupedMixed'] as const).map((mode) =>
      benchGoal(`LIG examples/s ÷ FLOP bound, ${r.model}, ${r.layer}, ${mode === 'batch1' ? 'batch 1' : 'grouped by length'}`, r[mode].ratio, '>=', GOAL, `bound = bare tokens/s ÷ 3·S·T, S = ${r.steps}`),
    ),
  );
  if (out) writeFileSync(out, JSON.stringify({ goal: GOAL, models: results, goals }, null, 2));
}

await main();
