/**
 * `npm run bench -- --only scale`: quantlens at paper scale on one machine. For each size a seeded
 * Llama is generated with the project's own builder (weights as loaders, spilled to external data
 * above 1.5 GB), then ONE pipeline runs predictions, neurons, dead, correlation, calibration,
 * agreement and salience (steps 8, limit 2) at fp32, nf4 and llm-int8, in a child process
 * (bench/scale-child.ts), reporting seconds and peak RSS per phase.
 *
 * When that run fails (refused by the memory budget, or killed), the bench says which phase and
 * why, then runs the same pipeline without salience so the other phases are still measured.
 * Sizes: ~0.1B, ~0.5B and ~1B (TinyLlama-1.1B's body); --quick runs ~0.1B only.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import type { LlamaConfig } from '../onnx/models/llama-config.ts';
import { llamaParameterCount } from '../onnx/models/llama-graph.ts';
import { SCHEMA } from '../pipelines/schema.ts';
import { benchGoal, fixed, formatTable, type BenchGoal } from './lib.ts';
import { BENCH_LAYERS, PROMPT_TEXT } from './bench-config.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const CHILD = path.join(REPO, 'bench', 'scale-child.ts');
const BOOLQ = path.resolve(REPO, '..', 'shared', 'datasets', 'boolq.csv');
const GiB = 1024 ** 3;
/** The issue's goals: whole-process peak RSS at ~1B, and salience's own peak over the model. */
export const SCALE_GOAL_BYTES = 12 * GiB;
const SALIENCE_BASELINE_BYTES = 1.5 * GiB;

const base = { modelType: 'llama' as const, vocabSize: 32000, maxPositions: 2048, rmsNormEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half' as const, tieWordEmbeddings: false, attentionBias: false, bosId: 1, eosId: 2, padId: 0, headDim: 64 };
export const SCALE_SIZES: Record<string, LlamaConfig> = {
  '0.1B': { ...base, hiddenSize: 768, intermediateSize: 2048, numLayers: 8, numHeads: 12, numKvHeads: 4 },
  '0.5B': { ...base, hiddenSize: 1536, intermediateSize: 4096, numLayers: 16, numHeads: 24, numKvHeads: 4 },
  '1B': { ...base, hiddenSize: 2048, intermediateSize: 5632, numLayers: 22, numHeads: 32, numKvHeads: 4 },
};

export interface Phase {
  name: string;
  seconds: number;
  peakRssBytes: number;
  /** The phase's peak over the RSS it started from (salience: what attribution adds to the open sessions). */
  peakIncreaseBytes?: number;
}

export interface PipelineAttempt {
  measures: string[];
  precisions: string[];
  ok: boolean;
  /** Why it failed: the child's last error line, or the signal that killed it. */
  failure?: string;
  /** The phase running when it failed (the first one without a PHASE line). */
  failedPhase?: string;
  phases: Phase[];
  peakRssBytes: number;
  memoryEstimate?: unknown;
}

export interface ScaleRun {
  size: string;
  parameters: number;
  modelBytes: number;
  generation: Phase | { error: string };
  attempts: PipelineAttempt[];
  budgetGb: number;
  salienceGoalBytes: number;
}

export interface ScaleResult {
  runs: ScaleRun[];
  prompts: number;
  dataset: string;
  goalBytes: number;
  goals: BenchGoal[];
}

const MEASURES = ['predictions', 'neurons', 'dead', 'correlation', 'calibration', 'agreement', 'salience'];
/** Phases in the order the child runs them (a missing line after a failure names the failed one). */
const PHASE_ORDER = ['quantize nf4', 'quantize llm-int8', 'plan (sessions)', 'attribution graphs', 'inference + estimators', 'salience', 'finish (tables, report)'];

function memAvailableBytes(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 16 * GiB;
}

function folderBytes(dir: string): number {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .reduce((s, e) => s + statSync(path.join(e.parentPath, e.name)).size, 0);
}

interface ChildResult {
  status: number | null;
  signal: string | null;
  phases: Phase[];
  info: any[];
  stderr: string;
}

/** Run scale-child.ts; each PHASE line is logged as it arrives (a ~1B run takes tens of minutes). */
function child(args: string[], log: (l: string) => void): Promise<ChildResult> {
  const c = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: ChildResult = { status: null, signal: null, phases: [], info: [], stderr: '' };
  createInterface({ input: c.stdout }).on('line', (line) => {
    if (line.startsWith('PHASE ')) {
      const p = JSON.parse(line.slice(6)) as Phase;
      out.phases.push(p);
      log(`  ${p.name}: ${fixed(p.seconds, 1)} s, peak RSS ${fixed(p.peakRssBytes / GiB, 2)} GiB`);
    }
    if (line.startsWith('INFO ')) out.info.push(JSON.parse(line.slice(5)));
  });
  // Keep only the tail of stderr: the error line is at the end.
  c.stderr.on('data', (d: Buffer) => (out.stderr = (out.stderr + d.toString()).slice(-20_000)));
  return new Promise((resolve) => c.on('close', (status, signal) => resolve({ ...out, status, signal })));
}

function failureOf(c: ChildResult): string {
  if (c.signal) return `killed by ${c.signal}${c.signal === 'SIGKILL' ? ' (most likely the kernel, out of memory)' : ''}`;
  const lines = c.stderr.split('\n').filter((l) => l.trim() && !/^quantlens: .*→/.test(l));
  const err = lines.reverse().find((l) => /^quantlens: |Error\b/.test(l)) ?? lines[0] ?? '';
  return `exit ${c.status}: ${err.trim().slice(0, 400)}`;
}

const ALL_PRECISIONS = ['fp32', 'nf4', 'llm-int8'];

function pipelineYaml(modelDir: string, outDir: string, measures: string[], prompts: number, budgetGb: number, precisions: string[]): string {
  const dataset = { path: existsSync(BOOLQ) ? BOOLQ : 'demo', prompt: PROMPT_TEXT, gold: 'gold', limit: prompts };
  const doc = {
    name: 'bench-scale',
    model: modelDir,
    precisions,
    dataset,
    layers: [...BENCH_LAYERS],
    // 16 BoolQ prompts are ~1,300 tokens: a 1,024-token cap keeps the estimate's per-batch term
    // (logits [T, V] per precision) near what the run really holds.
    batch: { max_tokens: 1024 },
    measure: measures,
    salience: { steps: 8, limit: 2 },
    calibration: { bootstrap: 200 },
    output: outDir,
    memory_budget_gb: Number(budgetGb.toFixed(2)),
  };
  return stringify(doc);
}

async function attempt(work: string, modelDir: string, measures: string[], prompts: number, budgetGb: number, log: (l: string) => void, precisions = ALL_PRECISIONS): Promise<PipelineAttempt> {
  const tag = `${measures.includes('salience') ? 'all' : 'no-salience'}-${precisions.join('-')}`;
  const yaml = path.join(work, `${tag}.yaml`);
  writeFileSync(yaml, pipelineYaml(modelDir, path.join(work, `out-${tag}`), measures, prompts, budgetGb, precisions));
  log(`pipeline [${measures.join(', ')}] at ${precisions.join(', ')} (budget ${budgetGb.toFixed(1)} GiB)…`);
  const c = await child(['run', yaml, path.join(work, 'cache')], log);
  const ok = c.status === 0;
  const done = new Set(c.phases.map((p) => p.name));
  const refused = /memory_budget_gb: the run needs/.test(c.stderr);
  const expected = PHASE_ORDER.filter((p) => (p !== 'salience' || measures.includes('salience')) && (!p.startsWith('quantize ') || precisions.includes(p.slice('quantize '.length))));
  const failedPhase = ok ? undefined : refused ? 'plan (refused by memory_budget_gb)' : expected.find((p) => !done.has(p));
  return {
    measures,
    precisions,
    ok,
    failure: ok ? undefined : failureOf(c),
    failedPhase,
    phases: c.phases,
    peakRssBytes: Math.max(0, ...c.phases.map((p) => p.peakRssBytes)),
    memoryEstimate: c.info.find((i) => i.memory)?.memory,
  };
}

function salienceStepBudgetBytes(): number {
  const f = (SCHEMA.salience as { fields: Record<string, { default?: unknown }> }).fields.memory_budget_gb;
  return typeof f?.default === 'number' ? f.default * GiB : 1 * GiB;
}

export async function benchScale(opts: { sizes: string[]; prompts: number; tmpDir: string; log: (l: string) => void }): Promise<ScaleResult> {
  const runs: ScaleRun[] = [];
  for (const size of opts.sizes) {
    const cfg = SCALE_SIZES[size];
    const work = path.join(opts.tmpDir, `scale-${size}`);
    mkdirSync(work, { recursive: true });
    const modelDir = path.join(work, 'model');
    writeFileSync(path.join(work, 'config.json'), JSON.stringify(cfg));
    opts.log(`${size}: generating a seeded Llama (${(llamaParameterCount(cfg) / 1e9).toFixed(2)}B parameters)…`);
    const g = await child(['generate', modelDir, path.join(work, 'config.json')], opts.log);
    const generation = g.status === 0 && g.phases[0] ? g.phases[0] : { error: failureOf(g) };
    const run: ScaleRun = { size, parameters: llamaParameterCount(cfg), modelBytes: 0, generation, attempts: [], budgetGb: 0, salienceGoalBytes: 0 };
    runs.push(run);
    if ('error' in generation) continue;
    run.modelBytes = folderBytes(modelDir);
    run.salienceGoalBytes = run.modelBytes + salienceStepBudgetBytes() + SALIENCE_BASELINE_BYTES;
    // The goal, or what this shared machine has free now (minus 1 GiB), whichever is less:
    // the pipeline's own memory budget then refuses a run that would not fit, before any work.
    run.budgetGb = Math.min(SCALE_GOAL_BYTES, memAvailableBytes() - GiB) / GiB;
    const all = await attempt(work, modelDir, MEASURES, opts.prompts, run.budgetGb, opts.log);
    run.attempts.push(all);
    if (!all.ok) {
      // Salience on one precision (the issue's salience goal), then every other measure at all three.
      run.attempts.push(await attempt(work, modelDir, ['predictions', 'salience'], opts.prompts, run.budgetGb, opts.log, ['fp32']));
      run.attempts.push(await attempt(work, modelDir, MEASURES.filter((m) => m !== 'salience'), opts.prompts, run.budgetGb, opts.log));
    }
    rmSync(work, { recursive: true, force: true });
  }
  return { runs, prompts: opts.prompts, dataset: existsSync(BOOLQ) ? 'BoolQ' : 'demo', goalBytes: SCALE_GOAL_BYTES, goals: scaleGoals(runs) };
}

/**
 * Per size: the whole process's peak RSS with every measure (the issue's goal is 12 GiB at ~1B;
 * smaller sizes show how it grows), and salience's own peak — the salience phase's peak over the
 * RSS it started from, i.e. over the inference sessions already open — against model bytes +
 * salience.memory_budget_gb + 1.5 GiB. NaN (missed) when the pipeline with salience failed.
 */
export function scaleGoals(runs: ScaleRun[]): BenchGoal[] {
  const goals: BenchGoal[] = [];
  for (const run of runs) {
    const all = run.attempts.find((a) => a.measures.includes('salience') && a.precisions.length === ALL_PRECISIONS.length);
    const ok = all?.ok === true;
    goals.push(benchGoal(`scale ${run.size}: whole-process peak RSS, every measure incl. salience, fp32+nf4+llm-int8`, ok ? all.peakRssBytes / GiB : NaN, '<=', SCALE_GOAL_BYTES / GiB, 'GiB, VmHWM'));
    const withSalience = ok ? all : run.attempts.find((a) => a.ok && a.measures.includes('salience'));
    const sal = withSalience?.phases.find((p) => p.name === 'salience');
    const salIncrease = sal?.peakIncreaseBytes !== undefined ? sal.peakIncreaseBytes / GiB : NaN;
    const which = withSalience ? withSalience.precisions.join('+') : 'none completed';
    goals.push(benchGoal(`scale ${run.size}: salience's peak RSS over the open sessions (${which})`, salIncrease, '<=', Number((run.salienceGoalBytes / GiB).toFixed(2)), 'GiB; target = model bytes + salience.memory_budget_gb + 1.5 GiB'));
  }
  return goals;
}

const gibOf = (b: number) => fixed(b / GiB, 2);

export function printScale(r: ScaleResult): void {
  console.log(`\n== scale: seeded Llamas, fp32 + nf4 + llm-int8, ${r.prompts} ${r.dataset} prompts, layers first/middle/last ${'='.repeat(8)}`);
  for (const run of r.runs) {
    const gen = 'error' in run.generation ? `generation FAILED: ${run.generation.error}` : `generated in ${fixed(run.generation.seconds, 1)} s, peak RSS ${gibOf(run.generation.peakRssBytes)} GiB`;
    console.log(`\n${run.size}: ${(run.parameters / 1e9).toFixed(3)}B parameters, ${gibOf(run.modelBytes)} GiB on disk; ${gen}; memory_budget_gb ${fixed(run.budgetGb, 1)}`);
    for (const a of run.attempts) {
      console.log(`pipeline [${a.measures.join(', ')}] at ${a.precisions.join(', ')}: ${a.ok ? 'completed' : `FAILED in phase "${a.failedPhase ?? '?'}": ${a.failure}`}`);
      if (a.phases.length)
        console.log(formatTable([{ title: 'phase' }, { title: 'seconds', align: 'right' }, { title: 'peak RSS GiB', align: 'right' }], a.phases.map((p) => [p.name, fixed(p.seconds, 1), gibOf(p.peakRssBytes)])));
      if (a.phases.length) console.log(`peak RSS (whole process): ${gibOf(a.peakRssBytes)} GiB   goal ≤ ${gibOf(r.goalBytes)} GiB: ${a.peakRssBytes <= r.goalBytes ? 'goal met' : 'GOAL MISSED'}`);
      const est = (a.memoryEstimate as { estimate_gib?: number } | undefined)?.estimate_gib;
      if (est !== undefined && a.phases.length) console.log(`memory_budget_gb estimate ${fixed(est, 2)} GiB vs measured peak ${gibOf(a.peakRssBytes)} GiB`);
      const sal = a.phases.find((p) => p.name === 'salience');
      if (sal) {
        const own = sal.peakIncreaseBytes ?? NaN;
        console.log(
          `salience peak ${gibOf(sal.peakRssBytes)} GiB whole process (inference sessions of ${a.precisions.join(', ')} + one attribution session at a time), ` +
            `${gibOf(own)} GiB over the open sessions   goal ≤ model + salience budget + 1.5 GiB = ${gibOf(run.salienceGoalBytes)} GiB: ${own <= run.salienceGoalBytes ? 'goal met' : 'GOAL MISSED'}`,
        );
      }
    }
  }
}

// Standalone: node --import tsx bench/scale.ts [--quick] [--sizes 0.1B,0.5B]
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--sizes');
  const sizes = at >= 0 ? args[at + 1].split(',') : args.includes('--quick') ? ['0.1B'] : Object.keys(SCALE_SIZES);
  const tmpDir = path.join(REPO, 'runs', 'bench', `scale-tmp-${process.pid}`);
  try {
    const r = await benchScale({ sizes, prompts: args.includes('--quick') ? 4 : 16, tmpDir, log: (l) => process.stderr.write(`  · ${l}\n`) });
    printScale(r);
    for (const g of r.goals) console.log(`goal: ${g.goal}: ${fixed(g.measured, 2)} ${g.comparison} ${g.target} (${g.detail}) ${g.met ? 'met' : 'MISSED'}`);
    if (process.env.QUANTLENS_BENCH_OUT) writeFileSync(process.env.QUANTLENS_BENCH_OUT, JSON.stringify(r, null, 2));
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
  }
}
