/**
 * `quantlens run a.yaml b.yaml …` or `quantlens run paper.suite.yaml`: several pipelines (tasks)
 * run one after another, each into its own folder, then one cross-task report compares them.
 * Every file is loaded and validated before the first task starts, so a typo in the last file
 * costs nothing. `<suite output>/suite.json` lists the tasks and their folders.
 */
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import { writeFileAtomically } from '../core/atomic-write.ts';
import type { PipelineConfig } from './schema.ts';
import { loadPipeline } from './load.ts';
import { isSuiteFile, loadSuite } from './suite-file.ts';
import { runPipeline, type RunOptions } from './run.ts';
import { writeSuiteReport } from '../sinks/report/index.ts';
import type { Override } from './overrides.ts';

export interface SuitePlan {
  name: string;
  /** Folder of suite.json and the cross-task report. */
  output: string;
  tasks: PipelineConfig[];
}

/** The deepest folder containing every one of `dirs`. */
function commonParent(dirs: string[]): string {
  const parts = dirs.map((d) => path.resolve(d).split(path.sep));
  const first = parts[0];
  let n = 0;
  while (n < first.length && parts.every((p) => p.length > n && p[n] === first[n])) n++;
  return first.slice(0, n).join(path.sep) || path.sep;
}

/**
 * Suite files expanded to their pipelines; every pipeline loaded and validated. `overrides`
 * (command-line flags other than --output) apply to every task, validated like its own YAML.
 */
export function planSuite(files: string[], opts: { output?: string; overrides?: Override[] } = {}): SuitePlan {
  const suites = files.filter(isSuiteFile).map(loadSuite);
  const taskFiles = files.flatMap((f) => (isSuiteFile(f) ? loadSuite(f).pipelines : [path.resolve(f)]));
  const seen = new Set<string>();
  for (const f of taskFiles) {
    if (seen.has(f)) throw new QuantlensError('CONFIG', 'this pipeline is given twice', f);
    seen.add(f);
  }
  const tasks = taskFiles.map((f) => loadPipeline(f, opts.overrides ?? []));
  const names = new Map<string, string>();
  for (const t of tasks) {
    if (names.has(t.name)) throw new QuantlensError('CONFIG', `name: "${t.name}" is also the name of ${names.get(t.name)}; tasks of one suite need distinct names`, t.file);
    names.set(t.name, t.file);
    if (opts.output) t.output = path.join(path.resolve(opts.output), t.name);
  }
  const output = opts.output ? path.resolve(opts.output) : suites.length === 1 ? suites[0].output : commonParent(tasks.map((t) => path.dirname(t.output)));
  const outs = new Map<string, string>();
  for (const t of tasks) {
    if (t.output === output) throw new QuantlensError('CONFIG', `output: ${t.output} is the suite's own folder; give each task a folder of its own`, t.file);
    if (outs.has(t.output)) throw new QuantlensError('CONFIG', `output: ${t.output} is also the output of ${outs.get(t.output)}`, t.file);
    outs.set(t.output, t.file);
  }
  const name = suites.length === 1 ? suites[0].name : path.basename(output);
  return { name, output, tasks };
}

/** The cross-task report of the task folders (sinks/report/suite.ts). */
export async function writeCrossTaskReport(taskDirs: string[], outDir: string): Promise<void> {
  await writeSuiteReport(taskDirs, outDir);
}

export interface SuiteResult {
  output: string;
  taskDirs: string[];
}

/** Runs every task in order, writes suite.json, then the cross-task report (unless `report: false`). */
export async function runSuite(s: SuitePlan, opts: Omit<RunOptions, 'shard' | 'total'> = {}): Promise<SuiteResult> {
  const taskDirs: string[] = [];
  for (const cfg of s.tasks) {
    const r = await runPipeline(cfg, opts);
    taskDirs.push(r.outDir);
  }
  const index = {
    name: s.name,
    tasks: s.tasks.map((t, i) => ({ name: t.name, pipeline: t.file, output: path.relative(s.output, taskDirs[i]) || '.' })),
  };
  await writeFileAtomically(path.join(s.output, 'suite.json'), JSON.stringify(index, null, 2) + '\n');
  if (opts.report !== false) await writeCrossTaskReport(taskDirs, s.output);
  return { output: s.output, taskDirs };
}
