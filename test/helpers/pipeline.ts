/**
 * Pipeline fixtures: write a pipeline YAML from an object (so tests state only the keys they care
 * about) and run the real CLI on it.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { parsePipeline } from '../../pipelines/load.ts';

export const CLI_BIN = path.resolve(import.meta.dirname, '..', '..', 'pipelines', 'bin.mjs');

/** `model: demo` on the built-in demo prompts, output `out` beside the file; `fields` override. */
export function writePipeline(dir: string, fields: Record<string, unknown> = {}, name = 'p.yaml'): string {
  const doc = { model: 'demo', dataset: { path: 'demo' }, output: 'out', ...fields };
  const file = path.join(dir, name);
  writeFileSync(file, stringify(doc));
  return file;
}

/**
 * A pipeline YAML from its lines, written to <dir>/<name>.yaml, for tests that run it both
 * through the CLI (`file`) and in-process (`cfg()`, parsed as the CLI parses it).
 */
export function yamlPipeline(dir: string, name: string, lines: string[]) {
  const yaml = lines.join('\n');
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, yaml + '\n');
  return { file, cfg: () => parsePipeline(yaml, file) };
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
