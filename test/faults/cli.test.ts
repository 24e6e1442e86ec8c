/**
 * Bad inputs through the real CLI, where the exit code and the single stderr line are the point:
 * exit ≠ 0, exactly one line naming the file/line/key/node (ONNX Runtime's own multi-line kernel
 * errors never reach the user), and no result files.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { assertNothingLeft, caseDir, cli, expectCliFailure } from './harness.ts';
import { sharedPath } from '../helpers/shared.ts';
import { INCOMPLETE_MARKER } from '../../pipelines/output-folder.ts';

const demo = (extra = '') => `model: demo\ndataset:\n  path: demo\n  limit: 4\noutput: out\n${extra}`;

test('CLI: NaN in a numeric key', () => {
  const dir = caseDir({ 'p.yaml': demo('correlation: {memory_budget_gb: .nan}\n') });
  expectCliFailure(cli(['run', 'p.yaml'], dir), /^quantlens: p\.yaml:6: correlation\.memory_budget_gb: must be a finite number/);
  assertNothingLeft(dir, path.join(dir, 'out'));
});

test('CLI: validate refuses a pipeline file over 1 MiB', () => {
  const dir = caseDir({ 'p.yaml': demo(`# ${'y'.repeat(1 << 21)}\n`) });
  expectCliFailure(cli(['validate', 'p.yaml'], dir), /^quantlens: p\.yaml: pipeline file is \d+ bytes, more than the 1048576 allowed/);
});

test('CLI: a pipeline file that does not exist', () => {
  const dir = caseDir();
  expectCliFailure(cli(['run', 'missing.yaml'], dir), /^quantlens: missing\.yaml: pipeline file not found/);
});

test('CLI: --shard with the index out of range', () => {
  const dir = caseDir({ 'p.yaml': demo() });
  expectCliFailure(cli(['run', 'p.yaml', '--shard', '3/2'], dir), /^quantlens: --shard: must look like i\/n/);
  assertNothingLeft(dir, path.join(dir, 'out'));
});

test('CLI: merge of a folder that is not a shard', () => {
  const dir = caseDir({ 'x/notes.txt': 'hi' });
  expectCliFailure(cli(['merge', 'x'], dir), /^quantlens: .*\/x: no state\.json: not a finished shard folder/);
});

test('CLI: report on a folder marked incomplete', () => {
  const dir = caseDir({ [`out/${INCOMPLETE_MARKER}`]: '', 'out/summary.json': '{}' });
  expectCliFailure(cli(['report', 'out'], dir), /^quantlens: .*\/out: folder is incomplete/);
});

test('CLI: a tokenizer larger than the model, without config.json, is refused before ONNX Runtime runs', () => {
  const src = sharedPath('models/tiny-random-gpt2-fp32', 'vocabulary mismatch without config.json');
  if (!src) return;
  const dir = caseDir({ 'p.yaml': 'model: m\ndataset:\n  path: demo\n  limit: 4\noutput: out\n' });
  cpSync(src, path.join(dir, 'm'), { recursive: true });
  for (const f of ['config.json', 'genai_config.json']) rmSync(path.join(dir, 'm', f), { force: true });
  expectCliFailure(cli(['run', 'p.yaml'], dir), /^quantlens: p\.yaml: model: tokenizer vocabulary \(\d+\) exceeds the model's \(1000\)/);
  assertNothingLeft(dir, path.join(dir, 'out'));
});

test('CLI: quantize of a model whose external data is a symlink out of its folder', async () => {
  const src = sharedPath('models/tiny-random-llama-fp16', 'quantize external data symlink');
  if (!src) return;
  const dir = caseDir();
  const m = path.join(dir, 'm');
  mkdirSync(m);
  cpSync(src, m, { recursive: true, dereference: true });
  const { readdirSync, renameSync, symlinkSync } = await import('node:fs');
  const data = readdirSync(m, { recursive: true }).map(String).find((f) => /\.onnx[._]data$/.test(f));
  assert.ok(data, 'the fixture has an external data file');
  renameSync(path.join(m, data!), path.join(dir, 'outside.data'));
  symlinkSync(path.join(dir, 'outside.data'), path.join(m, data!));
  const r = cli(['quantize', 'm', '--to', 'q4'], dir);
  expectCliFailure(r, /is a symlink that leaves the model folder/);
  assert.equal(readdirSync(m, { recursive: true }).map(String).filter((f) => /model_q4|\.tmp-/.test(f)), [], 'no quantized model written');
});

test.run();
