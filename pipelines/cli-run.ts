/**
 * The pipeline commands of the CLI — run, validate, quickstart — and the flags that override
 * pipeline keys: `--set key.path=value` (repeatable) and the shortcuts --precisions, --measure,
 * --layers, --limit, --output. Overrides are validated exactly like the YAML (pipelines/overrides.ts).
 */
import path from 'node:path';
import type { Argv } from 'yargs';
import { QuantlensError } from '../core/errors.ts';
import { loadPipeline } from './load.ts';
import { parseSetFlag, type Override } from './overrides.ts';
import { checkRunOutput } from './output-guard.ts';
import { packageFile } from '../core/package-info.ts';

type Args = Record<string, any>;

/** The shortcut flags and the key each one sets. */
const SHORTCUTS: [flag: string, keys: string[], describe: string][] = [
  ['precisions', ['precisions'], 'override precisions, e.g. fp32,nf4,llm-int8'],
  ['measure', ['measure'], 'override measure, e.g. predictions,neurons,dead'],
  ['layers', ['layers'], 'override layers, e.g. 0,2,4 or first,last'],
  ['limit', ['dataset', 'limit'], 'override dataset.limit'],
  ['output', ['output'], 'override the output folder (relative to the current folder)'],
];

export function overrideOptions<T>(y: Argv<T>): Argv<T> {
  let out = y.option('set', {
    type: 'string',
    describe: 'set any pipeline key: --set batch.max_examples=8 --set salience.steps=16 (repeatable; validated like the YAML)',
  }) as Argv<T>;
  for (const [flag, , describe] of SHORTCUTS)
    out = out.option(flag, { type: 'string', describe, requiresArg: true, ...(flag === 'output' ? { alias: 'out' } : {}) }) as Argv<T>;
  return out;
}

/** The overrides a command line gives, in the order they apply: shortcuts, then every --set. */
export function collectOverrides(a: Args): Override[] {
  const out: Override[] = [];
  for (const [flag, keys] of SHORTCUTS) {
    const v = a[flag];
    if (v === undefined) continue;
    if (Array.isArray(v)) throw new QuantlensError('USAGE', `--${flag} given more than once`, `--${flag}`);
    out.push({ flag: `--${flag}`, keys, text: String(v) });
  }
  for (const s of [a.set ?? []].flat()) out.push(parseSetFlag(String(s)));
  return out;
}

function parseShard(s: string | undefined): { index: number; count: number } | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m || Number(m[1]) >= Number(m[2])) throw new QuantlensError('USAGE', `must look like i/n with 0 ≤ i < n, got "${s}"`, '--shard');
  return { index: Number(m[1]), count: Number(m[2]) };
}

/** Several pipeline files, or a suite file: one folder per task, then the cross-task report (pipelines/suite.ts). */
async function runSuiteCommand(a: Args, files: string[]): Promise<void> {
  if (a.shard || a.resume) throw new QuantlensError('USAGE', 'not supported: --shard / --resume with several pipelines; run each file on its own', a.shard ? '--shard' : '--resume');
  // --output names the suite folder (tasks go in <output>/<task>); every other flag applies to each task.
  const overrides = collectOverrides(a).filter((o) => o.flag !== '--output');
  const { planSuite, runSuite } = await import('./suite.ts');
  const r = await runSuite(planSuite(files, { output: a.output, overrides }), { quiet: a.quiet, report: a.report });
  console.log(`results: ${r.output}`);
}

async function runCommand(a: Args): Promise<void> {
  const files = [a.pipeline].flat() as string[];
  const { isSuiteFile } = await import('./suite-file.ts');
  if (files.length > 1 || isSuiteFile(files[0])) return runSuiteCommand(a, files);
  const shard = parseShard(a.shard);
  const cfg = loadPipeline(files[0], collectOverrides(a));
  const outDir = shard ? path.join(cfg.output, `shard-${shard.index}-of-${shard.count}`) : cfg.output;
  if (checkRunOutput(outDir, { force: a.force, resume: a.resume, shard: !!shard }) === 'already-complete') {
    console.error(`quantlens: ${outDir}: already complete; nothing to resume (--force runs it again)`);
    return;
  }
  const { runPipeline } = await import('./run.ts'); // loaded on use: --help and usage errors stay fast
  await runPipeline(cfg, { shard, quiet: a.quiet, report: a.report, resume: a.resume });
}

async function validateCommand(a: Args): Promise<void> {
  const { isSuiteFile } = await import('./suite-file.ts');
  const { planSuite } = await import('./suite.ts');
  const cfgs = isSuiteFile(a.pipeline) ? planSuite([a.pipeline]).tasks : [loadPipeline(a.pipeline, collectOverrides(a))];
  const { preparePlan, releasePlan } = await import('./plan.ts');
  for (const cfg of cfgs) {
    const plan = await preparePlan(cfg);
    await releasePlan(plan);
    console.log(`${cfgs.length > 1 ? cfg.file : a.pipeline}: ok — ${plan.precisions.map((p) => p.precision).join(', ')}; layers ${plan.sites.map((s) => `${s.layer} (${s.tensor})`).join(', ')}`);
    if (plan.memory) console.log((await import('./budget.ts')).formatMemoryEstimate(plan.memory));
  }
}

async function quickstartCommand(a: Args): Promise<void> {
  // The example's own output is relative to the package; a user's quickstart belongs in ./runs.
  const here: Override = { flag: 'quickstart', keys: ['output'], text: path.join('runs', 'quickstart') };
  const cfg = loadPipeline(packageFile('pipelines', 'examples', 'quickstart.yaml'), [here, ...collectOverrides(a)]);
  checkRunOutput(cfg.output, { force: a.force });
  const { runPipeline } = await import('./run.ts');
  const r = await runPipeline(cfg, { quiet: a.quiet });
  console.log(`results: ${r.outDir} (open report.html; demo model, random weights)`);
}

const forceOption = { type: 'boolean', default: false, describe: 'overwrite a finished output folder' } as const;

export function pipelineCommands<T>(y: Argv<T>): Argv<T> {
  return y
    .command(
      'run <pipeline..>',
      'run a pipeline file and write its results (several files or a suite file: one folder per task, then a cross-task report)',
      (c) =>
        overrideOptions(c.positional('pipeline', { type: 'string', array: true, demandOption: true, describe: 'pipeline YAML file(s), or a suite file' }))
          .option('shard', { type: 'string', describe: 'process slice i of n (e.g. 3/16) and write a mergeable shard state' })
          .option('report', { type: 'boolean', default: true, describe: 'write report.html at the end' })
          .option('resume', { type: 'boolean', default: false, describe: 'continue from <output>/state/checkpoint.json when present, else start fresh' })
          .option('force', forceOption),
      runCommand,
    )
    .command(
      'validate <pipeline>',
      'check a pipeline file, its model, dataset and layers without running it',
      (c) => overrideOptions(c.positional('pipeline', { type: 'string', demandOption: true })),
      validateCommand,
    )
    .command(
      'quickstart',
      'run the built-in demo pipeline into ./runs/quickstart (generated demo model, random weights; no downloads)',
      (c) => overrideOptions(c).option('force', forceOption),
      quickstartCommand,
    ) as Argv<T>;
}
