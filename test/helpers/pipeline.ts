/**
 * Pipeline fixtures: write a pipeline YAML from an object (so tests state only the keys they care
 * about) and run the real CLI on it.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';

export const CLI_BIN = path.resolve(import.meta.dirname, '..', '..', 'pipelines', 'bin.mjs');

/** `model: demo` on the built-in demo prompts, output `out` beside the file; `fields` override. */
export function writePipeline(dir: string, fields: Record<string, unknown> = {}, name = 'p.yaml'): string {
  const doc = { model: 'demo', dataset: { path: 'demo' }, output: 'out', ...fields };
  const file = path.join(dir, name);
  writeFileSync(file, stringify(doc));
  return file;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `quantlens <args>` as a child process in CI mode (quiet logs). */
export function runCli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { cwd: opts.cwd, encoding: 'utf8', env: { ...process.env, CI: 'true', ...opts.env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.trim() };
}
