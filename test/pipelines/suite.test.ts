/**
 * Several pipelines in one `quantlens run`: suite files expanded, everything validated before
 * the first task, one folder per task, suite.json, then the cross-task report (or, in a build
 * without sinks/report's writeSuiteReport, one explicit "not available" line and exit 1).
 * The paper's four pipelines run on stories260K at fp32, nf4 and llm-int8 in one call; CI uses
 * limit 6, salience.limit 1 and salience.steps 4 per task (the README gives the timing of the
 * full-size run: limit 200, salience.limit 8, 50 steps).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { planSuite, runSuite } from '../../pipelines/suite.ts';
import { isQuantlensError } from '../../core/errors.ts';
import * as report from '../../sinks/report/index.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';

const root = path.resolve(import.meta.dirname, '../..');
const paper = path.join(root, 'pipelines/examples/paper');
const TASKS = ['boolq', 'piqa', 'hellaswag', 'toxicity'];
const haveSuiteReport = typeof (report as Record<string, unknown>).writeSuiteReport === 'function';

function demoTask(dir: string, name: string, extra = ''): string {
  const f = path.join(dir, `${name}.yaml`);
  writeFileSync(f, `name: ${name}\nmodel: demo\ndataset: {path: demo, limit: 4}\nmeasure: [predictions, perplexity]\noutput: runs/${name}\n${extra}`);
  return f;
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isQuantlensError(e), String(e));
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

test('the suite file and the four files give the same tasks; the suite folder is their common parent', () => {
  const a = planSuite(TASKS.map((t) => path.join(paper, `${t}.yaml`)));
  const b = planSuite([path.join(root, 'pipelines/examples/paper.suite.yaml')]);
  assert.equal(a.tasks.map((t) => t.name), TASKS);
  assert.equal(b.tasks.map((t) => t.file), a.tasks.map((t) => t.file));
  assert.is(a.output, path.join(root, 'runs/paper'));
  assert.is(b.output, path.join(root, 'runs/paper'));
  assert.is(b.name, 'paper');
  const c = planSuite(TASKS.map((t) => path.join(paper, `${t}.yaml`)), { output: '/tmp/x', overrides: [{ flag: '--limit', keys: ['dataset', 'limit'], text: '3' }] });
  assert.equal(c.tasks.map((t) => [t.output, t.dataset.limit]), TASKS.map((t) => [`/tmp/x/${t}`, 3]));
});

test('suite problems are refused before anything runs, naming the file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-suite-'));
  const a = demoTask(dir, 'a');
  writeFileSync(path.join(dir, 'b.yaml'), 'name: a\nmodel: demo\ndataset: {path: demo}\noutput: runs/b\n');
  assert.match(errorOf(() => planSuite([a, path.join(dir, 'b.yaml')])), /b\.yaml: name: "a" is also the name of/);
  assert.match(errorOf(() => planSuite([a, a])), /a\.yaml: this pipeline is given twice/);
  writeFileSync(path.join(dir, 's.yaml'), 'suite: [a.yaml]\noutputs: x\n');
  assert.match(errorOf(() => planSuite([path.join(dir, 's.yaml')])), /s\.yaml:2: outputs: unknown key/);
  writeFileSync(path.join(dir, 't.yaml'), 'suite: [a.yaml, nope.yaml]\n');
  assert.match(errorOf(() => planSuite([path.join(dir, 't.yaml')])), /t\.yaml:1: suite\[1\]: file not found/);
  const c = demoTask(dir, 'c', 'batch: {max_tokenz: 3}\n');
  assert.match(errorOf(() => planSuite([a, c])), /c\.yaml:6: batch\.max_tokenz: unknown key/);
  assert.not.ok(existsSync(path.join(dir, 'runs')), 'nothing ran');
});

test('one CLI command runs several pipelines: a folder each, suite.json, then the cross-task report', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-suite-cli-'));
  const files = [demoTask(dir, 'one'), demoTask(dir, 'two')];
  const r = spawnSync(process.execPath, [path.join(root, 'pipelines/bin.mjs'), 'run', ...files, '--quiet'], { encoding: 'utf8', env: { ...process.env, QUANTLENS_CACHE: path.join(dir, 'cache') } });
  for (const t of ['one', 'two']) assert.ok(existsSync(path.join(dir, 'runs', t, 'summary.json')), `${t}/summary.json (${r.stderr})`);
  const index = JSON.parse(readFileSync(path.join(dir, 'runs', 'suite.json'), 'utf8'));
  assert.equal(index.tasks.map((t: { output: string }) => t.output), ['one', 'two']);
  if (haveSuiteReport) assert.is(r.status, 0, r.stderr);
  else {
    assert.is(r.status, 1);
    const lines = r.stderr.split('\n').filter((l) => l.trim() && !/→|npm warn/.test(l));
    assert.is(lines.length, 1, r.stderr);
    assert.match(lines[0], /not available: the cross-task report/);
  }
});

test('the four paper pipelines on stories260K at fp32, nf4, llm-int8 in one call', async () => {
  if (!sharedPath('models/stories260K-onnx', 'paper suite') || !sharedPath('datasets/boolq.csv', 'paper suite')) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-paper-'));
  const plan = planSuite([path.join(root, 'pipelines/examples/paper.suite.yaml')], { output: dir, overrides: [{ flag: '--limit', keys: ['dataset', 'limit'], text: '6' }] });
  // CI size: attribution dominates the cost (~25 s CPU per attributed example on PIQA at 50 steps).
  for (const t of plan.tasks) Object.assign(t.salience, { limit: 1, steps: 4 });
  const t0 = performance.now();
  let reportError: string | undefined;
  await runSuite(plan, { quiet: true, report: true, cacheDir: path.join(dir, 'cache'), log: () => undefined }).catch((e) => {
    if (haveSuiteReport || !isQuantlensError(e)) throw e;
    reportError = e.message;
  });
  console.log(`4 tasks × 3 precisions, 6 examples each: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (!haveSuiteReport) assert.match(reportError ?? '', /not available: the cross-task report/);
  for (const t of TASKS) {
    const s = JSON.parse(readFileSync(path.join(dir, t, 'summary.json'), 'utf8'));
    assert.is(s.dataset.examples, 6, t);
    assert.equal(Object.keys(s.precisions), ['fp32', 'nf4', 'llm-int8']);
    for (const p of ['nf4', 'llm-int8']) assert.ok(s.perplexity.precisions[p].kld_mean > 0, `${t} ${p} KLD`);
    assert.is(s.salience.fp32['0'].examples, 1);
    for (const f of ['predictions', 'neurons', 'calibration', 'dead', 'correlation', 'agreement', 'salience', 'perplexity'])
      assert.ok(existsSync(path.join(dir, t, `${f}.parquet`)), `${t}/${f}.parquet`);
    const rows = await duckdbQuery(`select count(*)::int as n from '${dir}/${t}/perplexity.parquet' where precision = 'llm-int8' and metric = 'same_top_p'`);
    assert.is(rows[0].n, 1);
  }
  assert.equal(readdirSync(dir).filter((f) => TASKS.includes(f)).sort(), [...TASKS].sort());
});

test.run();
