/**
 * The CLI never overwrites finished results without --force: run (and quickstart, merge) refuse a
 * folder with summary.json, --resume on a finished folder does nothing, --force runs again;
 * quantize writes into the cache unless --output is given, refuses existing files, and
 * --no-double-quant reaches the quantizer; convert refuses a non-empty folder.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensureDemoModel } from '../../sources/demo/demo-model.ts';
import { checkRunOutput } from '../../pipelines/output-guard.ts';
import { tempDir } from '../helpers/temp.ts';

const bin = path.resolve(import.meta.dirname, '..', '..', 'pipelines', 'bin.mjs');
const root = tempDir('ql-cliout-');
const cache = path.join(root, 'cache');

function cli(args: string[], cwd = root) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd, env: { ...process.env, CI: 'true', QUANTLENS_CACHE: cache } });
  return { code: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

const yaml = path.join(root, 'p.yaml');
writeFileSync(yaml, 'model: demo\ndataset: {path: demo, limit: 4}\nmeasure: [predictions]\noutput: out\n');
const out = path.join(root, 'out');
const summaryOf = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8'));

test('run: a finished folder is refused without --force; --force runs again; --resume is a no-op on it', () => {
  const first = cli(['run', yaml, '--no-report']);
  assert.is(first.code, 0, first.stderr);
  assert.is(summaryOf(out).dataset.examples, 4);
  const before = statSync(path.join(out, 'summary.json')).mtimeMs;

  const again = cli(['run', yaml, '--limit', '3']);
  assert.is(again.code, 1);
  assert.is(again.stderr, `quantlens: ${out}: holds a finished run (summary.json); use --force to overwrite it, or --output for another folder`);
  assert.is(statSync(path.join(out, 'summary.json')).mtimeMs, before, 'untouched');

  const resumed = cli(['run', yaml, '--resume']);
  assert.is(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /already complete; nothing to resume/);
  assert.is(summaryOf(out).dataset.examples, 4);

  const forced = cli(['run', yaml, '--limit', '3', '--force', '--no-report']);
  assert.is(forced.code, 0, forced.stderr);
  assert.is(summaryOf(out).dataset.examples, 3, 'rewritten by the forced run');

  // --out is --output: another folder is fine.
  const other = cli(['run', yaml, '--out', 'other', '--no-report']);
  assert.is(other.code, 0, other.stderr);
  assert.is(summaryOf(path.join(root, 'other')).dataset.examples, 4);
});

test('the guard: shard folders are finished by state.json, and a checkpoint lets --resume continue', () => {
  const d = path.join(root, 'guard');
  mkdirSync(path.join(d, 'state'), { recursive: true });
  assert.is(checkRunOutput(d, {}), 'write');
  writeFileSync(path.join(d, 'summary.json'), '{}');
  assert.throws(() => checkRunOutput(d, {}), /holds a finished run/);
  assert.is(checkRunOutput(d, { force: true }), 'write');
  assert.is(checkRunOutput(d, { resume: true }), 'already-complete');
  writeFileSync(path.join(d, 'state', 'checkpoint.json'), '{}');
  assert.is(checkRunOutput(d, { resume: true }), 'write', 'killed after summary.json but before the checkpoint was removed');
  assert.is(checkRunOutput(d, { shard: true }), 'write', 'a shard is finished only by state.json');
  writeFileSync(path.join(d, 'state.json'), '{}');
  assert.throws(() => checkRunOutput(d, { shard: true }), /holds a finished run \(state\.json\)/);
});

test('quickstart writes ./runs/quickstart under the current folder and refuses to overwrite it', () => {
  const cwd = path.join(root, 'qs');
  mkdirSync(path.join(cwd, 'runs', 'quickstart'), { recursive: true });
  writeFileSync(path.join(cwd, 'runs', 'quickstart', 'summary.json'), '{}');
  const r = cli(['quickstart'], cwd);
  assert.is(r.code, 1);
  assert.is(r.stderr, `quantlens: ${path.join(cwd, 'runs', 'quickstart')}: holds a finished run (summary.json); use --force to overwrite it, or --output for another folder`);
});

test('quantize: into the cache by default, --output refuses existing files, --no-double-quant reaches the quantizer', async () => {
  const model = await ensureDemoModel({ dir: path.join(root, 'model') });
  const modelFiles = () => readdirSync(model, { recursive: true }).sort();
  const untouched = modelFiles();

  const cached = cli(['quantize', model, '--to', 'nf4', '--no-double-quant']);
  assert.is(cached.code, 0, cached.stderr);
  assert.match(cached.stdout, /^nf4: quantized into the cache → /);
  const cachedFile = cached.stdout.split(' → ')[1];
  assert.ok(cachedFile.startsWith(cache) && existsSync(cachedFile), cachedFile);
  const settings = JSON.parse(readFileSync(path.join(path.dirname(cachedFile), 'settings.json'), 'utf8'));
  assert.is(settings.doubleQuant, false);
  assert.equal(modelFiles(), untouched, 'nothing written into the model folder');
  assert.match(cli(['quantize', model, '--to', 'nf4', '--no-double-quant']).stdout, /^nf4: already in the cache → /);

  const dir = path.join(root, 'variants');
  const written = cli(['quantize', model, '--to', 'nf4', '--output', dir]);
  assert.is(written.code, 0, written.stderr);
  assert.ok(existsSync(path.join(dir, 'model_nf4.onnx')));
  const refused = cli(['quantize', model, '--to', 'nf4,q4', '--out', dir]);
  assert.is(refused.code, 1);
  assert.is(refused.stderr, `quantlens: ${path.join(dir, 'model_nf4.onnx')}: already exists; use --force to overwrite it, or --output for another folder`);
  assert.not.ok(existsSync(path.join(dir, 'model_q4.onnx')), 'refused before writing anything');
  // Double quantization changes the stored absmax, so the two nf4 files differ.
  assert.not.equal(readFileSync(path.join(dir, 'model_nf4.onnx')), readFileSync(cachedFile));
  assert.is(cli(['quantize', model, '--to', 'nf4', '--out', dir, '--force']).code, 0);
});

test('convert: a non-empty --output folder is refused without --force', () => {
  const dir = path.join(root, 'converted');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'model.onnx'), 'x');
  const r = cli(['convert', path.join(root, 'missing.bin'), '--out', dir]);
  assert.is(r.code, 1);
  assert.is(r.stderr, `quantlens: ${dir}: is not empty; use --force to write into it, or --output for another folder`);
});

test.after(() => rmSync(root, { recursive: true, force: true }));

test.run();
