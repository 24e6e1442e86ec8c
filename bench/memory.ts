/**
 * Peak memory does not grow with the dataset: the same pipeline (tiny demo model, short prompts,
 * predictions + neurons, three captured layers) over 10k and 100k synthetic prompts (--quick: 2k
 * and 20k), each in its own child process through the real CLI (`node pipelines/bin.mjs run <yaml>
 * --quiet`), peak RSS read from GNU `/usr/bin/time -v`. Without /usr/bin/time the child is
 * bench/child-run.ts, which calls runPipeline the same way and prints process.resourceUsage().maxRSS.
 *
 * The two sizes differ in prompts only: the same pipeline file (the dataset of the smaller is the
 * first rows of the larger's), a checkpoint interval short enough that the smaller run checkpoints
 * too (with the default of 50 batches a 2k-prompt run never does, so it never ran the code whose
 * garbage grew the larger run), one unmeasured warm-up run first (so neither measured child is the
 * one that fills tsx's transform cache), and the sizes measured alternately over `rounds` rounds,
 * the ratio taken between the medians of each size.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensureDemoModel } from '../sources/demo/demo-model.ts';
import { benchGoal, median, parseMaxRssKiB, writeSyntheticJsonl, type BenchGoal } from './lib.ts';
import { PROMPT_TEMPLATE } from './pipeline.ts';
import { BENCH_LAYERS } from './bench-config.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const TIME = '/usr/bin/time';
/** Batches between checkpoints: a 2k-prompt run (≈ 32 batches of 64) checkpoints 3 times. */
export const CHECKPOINT_EVERY = 10;
/** Prompts of the unmeasured warm-up run. */
const WARM_UP_PROMPTS = 200;

export interface MemoryRun {
  prompts: number;
  peakRssMiB: number;
  seconds: number;
  /** 'time -v' or 'resourceUsage'. */
  source: string;
  /** Extra CLI flags of this run, e.g. --no-report. */
  flags: string[];
}

export interface MemoryResult {
  /** Every measured run, in the order run (sizes alternating, round by round). */
  runs: MemoryRun[];
  /** Per size: the median peak RSS over its rounds. */
  points: { prompts: number; peakRssMiB: number }[];
  /** Median peak RSS at the largest size ÷ at the smallest. */
  ratio: number;
  goal: number;
  goals: BenchGoal[];
}

function pipelineYaml(dataset: string, output: string): string {
  return [
    'name: bench-memory',
    'model: demo',
    'dataset:',
    `  path: ${JSON.stringify(dataset)}`,
    `  prompt: "${PROMPT_TEMPLATE}"`,
    `layers: [${BENCH_LAYERS.join(', ')}]`,
    'measure: [predictions, neurons]',
    `checkpoint_every: ${CHECKPOINT_EVERY}`,
    `output: ${JSON.stringify(output)}`,
    '',
  ].join('\n');
}

/** One child process over `prompts` records; returns its peak RSS. */
export async function measurePeakRss(prompts: number, tmpDir: string, flags: string[] = []): Promise<MemoryRun> {
  const dataset = path.join(tmpDir, `memory-${prompts}.jsonl`);
  if (!existsSync(dataset)) await writeSyntheticJsonl(dataset, prompts, { minWords: 3, maxWords: 8, seed: 11 });
  const output = path.join(tmpDir, `out-memory-${prompts}`);
  const yaml = path.join(tmpDir, `memory-${prompts}.yaml`);
  writeFileSync(yaml, pipelineYaml(dataset, output));
  rmSync(output, { recursive: true, force: true });
  const useTime = existsSync(TIME);
  const node = process.execPath;
  const [cmd, args] = useTime
    ? [TIME, ['-v', node, path.join(REPO, 'pipelines', 'bin.mjs'), 'run', yaml, '--quiet', ...flags]]
    : [node, ['--import', 'tsx', path.join(REPO, 'bench', 'child-run.ts'), yaml, ...flags]];
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd: REPO, encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, CI: 'true' } });
  const seconds = (performance.now() - t0) / 1000;
  rmSync(output, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`memory run with ${prompts} prompts failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  let kib: number | null;
  if (useTime) kib = parseMaxRssKiB(r.stderr);
  else {
    const m = /maxRSS_KiB=(\d+)/.exec(r.stdout);
    kib = m ? Number(m[1]) : null;
  }
  if (kib === null) throw new Error(`memory run with ${prompts} prompts: no peak RSS in the child's output`);
  return { prompts, peakRssMiB: kib / 1024, seconds, source: useTime ? 'time -v' : 'resourceUsage', flags };
}

export async function benchMemory(opts: { sizes: [number, number]; rounds?: number; tmpDir: string; log?: (l: string) => void }): Promise<MemoryResult> {
  await ensureDemoModel({ size: 'tiny' }); // generated here, not inside the measured child
  await measurePeakRss(WARM_UP_PROMPTS, opts.tmpDir);
  const runs: MemoryRun[] = [];
  for (let round = 0; round < (opts.rounds ?? 1); round++) {
    for (const n of opts.sizes) {
      const run = await measurePeakRss(n, opts.tmpDir);
      opts.log?.(`memory: round ${round + 1}, ${n} prompts → peak RSS ${run.peakRssMiB.toFixed(0)} MiB in ${run.seconds.toFixed(1)} s`);
      runs.push(run);
    }
  }
  const points = opts.sizes.map((prompts) => ({ prompts, peakRssMiB: median(runs.filter((r) => r.prompts === prompts).map((r) => r.peakRssMiB)) }));
  const ratio = points[1].peakRssMiB / points[0].peakRssMiB;
  const detail = `whole process, median of ${opts.rounds ?? 1} alternating round${(opts.rounds ?? 1) === 1 ? '' : 's'}`;
  const goals = [benchGoal(`peak RSS ${points[1].prompts} ÷ ${points[0].prompts} prompts (flat memory)`, ratio, '<=', 1.1, detail)];
  return { runs, points, ratio, goal: 1.1, goals };
}
