/**
 * `npm run bench`: the performance numbers of quantlens, printed as tables with their goals and
 * written to runs/bench/results.json. Timings are reported, never asserted.
 *
 *   npm run bench                     pipeline, memory, estimators, then bench/quantize.ts and
 *                                     bench/attribution.ts when present (~10 min on 2 cores)
 *   npm run bench -- --quick          smaller sizes (a few minutes); memory at 2k / 20k prompts
 *   npm run bench -- --all            also bench/parquet-writers.ts
 *   npm run bench -- --only scale      bench/scale.ts: seeded ~0.1B/0.5B/1B Llamas, every measure at
 *                                     fp32/nf4/llm-int8, peak RSS per phase (tens of minutes; --quick: 0.1B)
 *   npm run bench -- --only scale --sizes 1B   one scale size (0.1B, 0.5B, 1B; comma-separated)
 *   npm run bench -- --only pipeline,memory,estimators,quantize,convert,attribution,parquet,scale
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomically } from '../core/atomic-write.ts';
import { benchPipelineThroughput } from './pipeline.ts';
import { printThroughput } from './pipeline-print.ts';
import { benchMemory, CHECKPOINT_EVERY, type MemoryResult } from './memory.ts';
import { BENCH_LAYERS } from './bench-config.ts';
import { benchEstimators, type EstimatorsResult, type EstimatorRun } from './estimators.ts';
import { duration, fixed, formatTable, median, percent, type BenchGoal } from './lib.ts';
import { benchScale, printScale, SCALE_SIZES } from './scale.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const all = args.includes('--all');
const onlyAt = args.indexOf('--only');
const only = onlyAt >= 0 ? new Set((args[onlyAt + 1] ?? '').split(',')) : null;
// parquet and scale (tens of minutes at ~1B) run only when named or with --all.
const sizesAt = args.indexOf('--sizes');
const scaleSizes = sizesAt >= 0 ? (args[sizesAt + 1] ?? '').split(',').filter(Boolean) : null;
for (const s of scaleSizes ?? []) {
  if (!(s in SCALE_SIZES)) {
    console.error(`quantlens bench: --sizes: unknown size '${s}' (sizes: ${Object.keys(SCALE_SIZES).join(', ')})`);
    process.exit(2);
  }
}
const wanted = (section: string) => (only ? only.has(section) : (section !== 'parquet' && section !== 'scale') || all);

const SIZES = quick
  ? { throughputPrompts: 200, rounds: 2, endOfRun: [1_000, 2_000, 5_000], memory: [2_000, 20_000] as [number, number], memoryRounds: 3, prompts: 100, widePrompts: 24, quantizeArgs: ['1'], convertArgs: ['1'], attributionArgs: ['4'], parquetArgs: ['200000'] }
  : { throughputPrompts: 600, rounds: 5, endOfRun: [10_000, 100_000], memory: [10_000, 100_000] as [number, number], memoryRounds: 3, prompts: 300, widePrompts: 64, quantizeArgs: [] as string[], convertArgs: [] as string[], attributionArgs: [] as string[], parquetArgs: [] as string[] };

const log = (line: string) => process.stderr.write(`  · ${line}\n`);
const verdict = (met: boolean) => (met ? 'goal met' : 'GOAL MISSED');

function heading(title: string): void {
  console.log(`\n== ${title} ${'='.repeat(Math.max(0, 76 - title.length))}`);
}

function printMemory(r: MemoryResult): void {
  heading('2. Peak RSS vs dataset size (separate child processes, CLI `run --quiet`)');
  console.log(`model: tiny demo; measures [predictions, neurons]; layers ${BENCH_LAYERS.join(', ')}; prompts of 3–8 words; checkpoint every ${CHECKPOINT_EVERY} batches`);
  console.log(
    formatTable(
      [{ title: 'prompts', align: 'right' }, { title: 'peak RSS MiB', align: 'right' }, { title: 'seconds', align: 'right' }, { title: 'source' }],
      r.runs.map((x) => [x.prompts.toLocaleString('en'), fixed(x.peakRssMiB, 1), fixed(x.seconds, 1), x.source]),
    ),
  );
  const [a, b] = r.points;
  console.log(`median peak RSS ${fixed(a.peakRssMiB, 1)} / ${fixed(b.peakRssMiB, 1)} MiB; ratio ${b.prompts.toLocaleString('en')} ÷ ${a.prompts.toLocaleString('en')}: ${fixed(r.ratio, 3)}   goal ≤ ${r.goal.toFixed(2)}: ${verdict(r.ratio <= r.goal)}`);
}

function printEstimatorRun(e: EstimatorRun): void {
  console.log(
    `${e.label}: hidden ${e.model.hiddenSize}, d_ff ${e.model.intermediateSize}, ${e.model.layers} layers; precisions [${e.precisions.join(', ')}]; measures [${e.measures.join(', ')}]; ${e.prompts} prompts; ` +
      `pipeline ${fixed(e.pipelineSeconds, 1)} s (streaming + end of run), inference ${fixed(e.inferenceSeconds, 1)} s`,
  );
  console.log(
    formatTable(
      [{ title: 'estimator' }, { title: 'seconds', align: 'right' }, { title: 'share of pipeline', align: 'right' }],
      [...e.estimators.map((x) => [x.name, fixed(x.seconds, 2), percent(x.share)]), ['= all estimators', fixed(e.estimators.reduce((s, x) => s + x.seconds, 0), 2), percent(e.estimatorShare)]],
    ),
  );
}

function printEstimators(r: EstimatorsResult): void {
  heading('3. Estimator cost');
  printEstimatorRun(r.allMeasures);
  console.log('');
  printEstimatorRun(r.wide);
  console.log(`same run without correlation: ${fixed(r.wideBaseSeconds, 1)} s`);
  console.log(
    `correlation share at d_ff 4096 = (with − without) ÷ with: ${percent(r.correlationShareWide)} (wrapped-method estimate ${percent(r.correlationShareWrapped)})   ` +
      `goal ≤ ${percent(r.goal)}: ${verdict(r.correlationShareWide <= r.goal)}`,
  );
  const fl = r.floor;
  console.log(
    `FLOP-bound floor of that share: ${percent(fl.share)} (Gram ${fixed(fl.gramFlops / 1e9, 1)} GFLOP at ${fixed(fl.gramGflops, 1)} GFLOP/s = ${fixed(fl.gramSeconds, 2)} s vs forward ${fixed(fl.forwardFlops / 1e9, 1)} GFLOP in ${fixed(fl.forwardSeconds, 2)} s = ${fixed(fl.forwardGflops, 1)} GFLOP/s); measured ${fixed(fl.aboveFloor, 2)}× the floor`,
  );
  console.log(
    `centred Gram ${r.gram.rows}×${r.gram.width} (the product behind each correlation update): float64 ${fixed(r.gram.float64Seconds, 2)} s, float32 ${fixed(r.gram.float32Seconds, 2)} s ` +
      `(${fixed(r.gram.float64Seconds / r.gram.float32Seconds, 2)}×)`,
  );
  const gf = r.gram.gflops;
  console.log(
    `correlation Gram (upper-triangle blocks, float32): ${fixed(gf.gram, 1)} GFLOP/s on ${fixed(gf.gramFlops / 1e9, 1)} GFLOP vs a plain ORT MatMul of the full product ${fixed(gf.matmul, 1)} GFLOP/s on ${fixed(gf.matmulFlops / 1e9, 1)} GFLOP (each side's fastest call): ` +
      `ratio ${fixed(gf.ratio, 2)} (median of ${gf.pairs} alternated pairs)   goal ≥ ${gf.goal}: ${verdict(gf.ratio >= gf.goal)}`,
  );
  for (const n of r.notes) console.log(`note: ${n}`);
}

/**
 * Run a teammate's bench script as a child; its output goes straight to the terminal. A script
 * that writes JSON to $QUANTLENS_BENCH_OUT has it recorded under `result` in results.json.
 */
function runScript(name: string, file: string, scriptArgs: string[]): { name: string; status: string; seconds: number; result?: unknown } {
  heading(`${name} (${path.relative(REPO, file)}${scriptArgs.length ? ' ' + scriptArgs.join(' ') : ''})`);
  if (!existsSync(file)) {
    console.log(`skipped: ${path.relative(REPO, file)} does not exist`);
    return { name, status: 'absent', seconds: 0 };
  }
  const t0 = performance.now();
  const outFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'quantlens-bench-script-')), 'result.json');
  const r = spawnSync(process.execPath, ['--import', 'tsx', file, ...scriptArgs], { cwd: REPO, stdio: 'inherit', env: { ...process.env, QUANTLENS_BENCH_OUT: outFile } });
  const seconds = (performance.now() - t0) / 1000;
  const status = r.status === 0 ? 'ok' : `failed (exit ${r.status ?? r.signal})`;
  console.log(`${name}: ${status} in ${duration(seconds)}`);
  const result = existsSync(outFile) ? JSON.parse(readFileSync(outFile, 'utf8')) : undefined;
  rmSync(path.dirname(outFile), { recursive: true, force: true });
  return { name, status, seconds, ...(result === undefined ? {} : { result }) };
}

async function section<T>(name: string, results: Record<string, unknown>, run: () => Promise<T>, print: (r: T) => void): Promise<void> {
  const t0 = performance.now();
  try {
    const r = await run();
    print(r);
    results[name] = r;
  } catch (e) {
    heading(name);
    console.log(`FAILED: ${String((e as Error).stack ?? e).split('\n').slice(0, 4).join('\n  ')}`);
    results[name] = { error: String((e as Error).message ?? e) };
  }
  console.log(`(${name}: ${duration((performance.now() - t0) / 1000)})`);
}

/** Every section's and script's `goals` (see BenchGoal), in the order they ran. */
function collectGoals(results: Record<string, unknown>): BenchGoal[] {
  const goals: BenchGoal[] = [];
  const take = (x: unknown) => {
    const g = (x as { goals?: unknown } | undefined)?.goals;
    if (Array.isArray(g)) goals.push(...(g as BenchGoal[]));
  };
  for (const [name, r] of Object.entries(results)) if (name !== 'scripts') take(r);
  for (const s of (results.scripts as { result?: unknown }[] | undefined) ?? []) take(s.result);
  return goals;
}

function printGoals(goals: BenchGoal[]): void {
  heading('Goals');
  if (goals.length === 0) return void console.log('(no section that ran has a goal)');
  console.log(
    formatTable(
      [{ title: 'goal' }, { title: 'measured', align: 'right' }, { title: 'target' }, { title: 'verdict' }],
      goals.map((g) => [g.goal + (g.detail ? ` (${g.detail})` : ''), fixed(g.measured, 3), `${g.comparison === '>=' ? '≥' : '≤'} ${g.target}`, g.met ? 'met' : 'MISSED']),
    ),
  );
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'quantlens-bench-'));
  const results: Record<string, unknown> = {
    started: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    machine: { cpus: os.availableParallelism(), node: process.version, platform: `${os.platform()} ${os.arch()}`, loadavg1: os.loadavg()[0] },
  };
  console.log(`quantlens bench (${quick ? 'quick' : 'full'}): ${os.availableParallelism()} cores, Node ${process.version}, load average ${os.loadavg()[0].toFixed(2)} at start`);
  try {
    if (wanted('pipeline')) await section('pipeline', results, () => benchPipelineThroughput({ prompts: SIZES.throughputPrompts, rounds: SIZES.rounds, endOfRunSizes: SIZES.endOfRun, tmpDir, log }), printThroughput);
    if (wanted('memory')) await section('memory', results, () => benchMemory({ sizes: SIZES.memory, rounds: SIZES.memoryRounds, tmpDir, log }), printMemory);
    if (wanted('estimators')) await section('estimators', results, () => benchEstimators({ prompts: SIZES.prompts, widePrompts: SIZES.widePrompts, tmpDir, log }), printEstimators);
    if (wanted('scale')) await section('scale', results, () => benchScale({ sizes: scaleSizes ?? (quick ? ['0.1B'] : Object.keys(SCALE_SIZES)), prompts: quick ? 4 : 16, tmpDir, log }), printScale);
    const scripts: Record<string, unknown>[] = [];
    if (wanted('quantize')) scripts.push(runScript('quantize', path.join(REPO, 'bench', 'quantize.ts'), SIZES.quantizeArgs));
    if (wanted('convert')) scripts.push(runScript('convert', path.join(REPO, 'bench', 'convert.ts'), SIZES.convertArgs));
    if (wanted('attribution')) scripts.push(runScript('attribution', path.join(REPO, 'bench', 'attribution.ts'), SIZES.attributionArgs));
    if (wanted('parquet')) scripts.push(runScript('parquet writers', path.join(REPO, 'bench', 'parquet-writers.ts'), SIZES.parquetArgs));
    else console.log('\n(parquet writer micro-benchmark: run with --all)');
    results.scripts = scripts;
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
  }
  results.goals = collectGoals(results);
  printGoals(results.goals as BenchGoal[]);
  results.seconds = (performance.now() - t0) / 1000;
  results.loadavg1AtEnd = os.loadavg()[0];
  const file = path.join(REPO, 'runs', 'bench', 'results.json');
  await writeFileAtomically(file, JSON.stringify(results, null, 2) + '\n');
  console.log(`\nbench done in ${duration((performance.now() - t0) / 1000)} (load average ${os.loadavg()[0].toFixed(2)}); results → ${path.relative(REPO, file)}`);
}

await main();
