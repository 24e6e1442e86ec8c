/**
 * Fault-injection harness: a case writes files into a fresh folder, runs quantlens in process
 * (or through the CLI where the exit code is the point) and expects one QuantlensError line
 * naming the place, and nothing under a final name: no result file, no INCOMPLETE marker, no
 * temporary anywhere in the case folder.
 */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isQuantlensError } from '../../core/errors.ts';
import { loadPipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { resultsIn, INCOMPLETE_MARKER } from '../../pipelines/output-folder.ts';
import { tempDir } from '../helpers/temp.ts';

export const repo = path.resolve(import.meta.dirname, '..', '..');
export const bin = path.join(repo, 'pipelines', 'bin.mjs');
export const quiet = { quiet: true, report: false, log: () => undefined } as const;

export function caseDir(files: Record<string, string | Uint8Array> = {}): string {
  const dir = tempDir('ql-fault-');
  for (const [name, data] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), data);
  }
  return dir;
}

/** Every file under `dir`, relative. */
function allFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).map(String);
}

/** Nothing under a final name in `out`, and no temporary anywhere under `dir`. */
export function assertNothingLeft(dir: string, out: string, before: string[] = []): void {
  assert.equal(resultsIn(out), [], 'no result files under final names');
  const files = allFiles(dir).filter((f) => !before.includes(f));
  assert.equal(files.filter((f) => /\.tmp-\d+-/.test(f)), [], 'no temporaries');
  assert.not.ok(files.some((f) => path.basename(f) === INCOMPLETE_MARKER), 'no INCOMPLETE marker without a checkpoint');
}

/** Run `fn`, expecting a one-line QuantlensError matching `pattern`. */
export async function expectError(fn: () => unknown, pattern: RegExp): Promise<Error> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected an error matching ${pattern}`);
  assert.ok(isQuantlensError(err), `not a QuantlensError: ${(err as Error)?.stack ?? err}`);
  const msg = (err as Error).message;
  assert.not.ok(msg.includes('\n'), `one line: ${msg}`);
  assert.ok(pattern.test(msg), `"${msg}" does not match ${pattern}`);
  return err as Error;
}

/** The whole of a run from a pipeline file, in process: load → plan → stream → outputs. */
export async function runFile(yamlFile: string, opts: Record<string, unknown> = {}): Promise<void> {
  const cfg = loadPipeline(yamlFile);
  await runPipeline(cfg, { ...quiet, cacheDir: path.join(path.dirname(yamlFile), 'cache'), ...opts });
}

export interface CliResult {
  code: number | null;
  lines: string[];
}

/** The real CLI; `lines` are stderr's lines except the start/end log lines. */
export function cli(args: string[], cwd: string, env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, CI: 'true', ...env } });
  const lines = (r.stderr ?? '').split('\n').filter((l) => l.trim() && !/^quantlens: .*(→|resuming)/.test(l));
  return { code: r.status, lines };
}

export function expectCliFailure(r: CliResult, pattern: RegExp): void {
  assert.ok(r.code !== 0 && r.code !== null, `exit code ${r.code}`);
  assert.is(r.lines.length, 1, `one line, got:\n${r.lines.join('\n')}`);
  assert.match(r.lines[0], pattern);
}
