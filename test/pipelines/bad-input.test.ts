/**
 * Bad input through the real CLI: one clear line on stderr, a non-zero exit, and no output file
 * left behind under any name.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sharedPath } from '../helpers/shared.ts';
import { tempDir } from '../helpers/temp.ts';

const bin = path.resolve(import.meta.dirname, '..', '..', 'pipelines', 'bin.mjs');

function runCli(yaml: string, files: Record<string, string> = {}): { code: number | null; stderr: string; out: string; dir: string } {
  const dir = tempDir('ql-bad-');
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  writeFileSync(path.join(dir, 'p.yaml'), yaml);
  const r = spawnSync(process.execPath, [bin, 'run', path.join(dir, 'p.yaml'), '--quiet'], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  return { code: r.status, stderr: r.stderr.trim(), out: path.join(dir, 'out'), dir };
}

function expectCleanFailure(r: ReturnType<typeof runCli>, pattern: RegExp): void {
  assert.ok(r.code !== 0 && r.code !== null, `exit code ${r.code}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() && !/^quantlens: .*→/.test(l));
  assert.is(lines.length, 1, `one line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.not.ok(existsSync(r.out) && readdirSync(r.out, { recursive: true }).length > 0, 'no output files');
  // Nothing half-written next to the pipeline either.
  assert.equal(readdirSync(r.dir).filter((f) => f.includes('.tmp-')), []);
}

const demoYaml = (extra = '') => `model: demo\ndataset:\n  path: demo\noutput: out\n${extra}`;

test('malformed YAML names the file and line', () => {
  expectCleanFailure(runCli('model: demo\ndataset: [path: x\n'), /p\.yaml:\d+: invalid YAML/);
});

test('an unknown key names the line and suggests the right key', () => {
  expectCleanFailure(runCli(demoYaml('measures: [neurons]\n')), /p\.yaml:5: measures: unknown key \(did you mean "measure"\?\)/);
});

test('a missing model folder', () => {
  expectCleanFailure(runCli('model: ./nope\ndataset:\n  path: demo\noutput: out\n'), /model folder not found/);
});

test('a model without the requested layer', () => {
  expectCleanFailure(runCli(demoYaml('layers: [0, 17]\n')), /layers\[1\].*layer 17 does not exist/);
});

test('a CSV without the gold column', () => {
  const r = runCli('model: demo\ndataset:\n  path: d.csv\n  gold: answer\noutput: out\n', { 'd.csv': 'prompt,gold\n"Is it?",True\n' });
  expectCleanFailure(r, /d\.csv: dataset has no gold column "answer"/);
});

test('an empty dataset', () => {
  expectCleanFailure(runCli('model: demo\ndataset:\n  path: d.csv\noutput: out\n', { 'd.csv': 'prompt,gold\n' }), /d\.csv: the dataset has no records/);
});

test('a tokenizer whose vocabulary exceeds the model\'s', () => {
  const gpt2 = sharedPath('models/tiny-random-gpt2-fp32', 'tokenizer larger than model');
  if (!gpt2) return;
  expectCleanFailure(runCli(`model: ${gpt2}\ndataset:\n  path: demo\noutput: out\n`), /tokenizer vocabulary \(\d+\) exceeds the model's \(1000\)/);
});

test('the correlation memory budget is refused before any work starts', () => {
  const r = runCli(demoYaml('measure: [correlation]\ncorrelation: {memory_budget_gb: 0.0001}\n'));
  expectCleanFailure(r, /correlation.*(budget|memory)/i);
});

test.run();
