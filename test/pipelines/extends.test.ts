/**
 * `extends:` in pipeline files: deep merge (mappings key by key, lists replaced), relative paths
 * resolved from the file they are written in, errors naming the file and line where the bad
 * value is (also inside a shared part), cycles and missing files refused. Also the paper
 * pipelines themselves load, share one part and differ only where they should.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadPipeline, parsePipeline } from '../../pipelines/load.ts';
import { isQuantlensError } from '../../core/errors.ts';

function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-extends-'));
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isQuantlensError(e), `a QuantlensError, got ${e}`);
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

const BASE = 'model: demo\nprecisions: [fp32, nf4]\ndataset:\n  limit: 7\n  gold: label\nmeasure: [predictions, perplexity]\nbatch: {max_examples: 4}\n';

test('the extending file is merged over the shared part, key by key', () => {
  const dir = tree({ 'shared/base.yaml': BASE, 'data/x.csv': 'prompt,label\na,b\n' });
  const cfg = parsePipeline('extends: shared/base.yaml\ndataset:\n  path: data/x.csv\nprecisions: [fp32]\nbatch: {window: 8}\n', path.join(dir, 'task.yaml'));
  assert.equal(cfg.precisions, ['fp32'], 'a list is replaced, not appended');
  assert.is(cfg.dataset.limit, 7, 'inherited nested key');
  assert.is(cfg.dataset.gold, 'label');
  assert.is(cfg.dataset.path, path.join(dir, 'data/x.csv'));
  assert.equal(cfg.batch, { max_tokens: 4096, max_examples: 4, window: 8 }, 'nested mapping merged, defaults filled');
  assert.equal(cfg.measure, ['predictions', 'perplexity']);
  assert.is(cfg.name, 'task', 'the name comes from the extending file');
  assert.is(cfg.output, path.join(dir, 'runs', 'task'));
});

test('relative paths resolve from the file that writes them', () => {
  const dir = tree({ 'a/b/base.yaml': 'model: ../models/m\ndataset:\n  path: ../../d.csv\noutput: out\n' });
  const cfg = parsePipeline('extends: a/b/base.yaml\n', path.join(dir, 'task.yaml'));
  assert.is(cfg.model, path.join(dir, 'a/models/m'));
  assert.is(cfg.dataset.path, path.join(dir, 'd.csv'));
  assert.is(cfg.output, path.join(dir, 'a/b/out'));
});

test('an error in the shared part names that file and line', () => {
  const dir = tree({ 'base.yaml': 'model: demo\nprecisions: [fp32]\nbatch:\n  max_tokenz: 4\n' });
  const msg = errorOf(() => parsePipeline('extends: base.yaml\ndataset: {path: demo}\n', path.join(dir, 'task.yaml')));
  assert.ok(msg.startsWith(`${path.join(dir, 'base.yaml')}:4: batch.max_tokenz: unknown key`), msg);
  const bad = tree({ 'base.yaml': 'model: demo\ndataset: {path: demo}\n' });
  const msg2 = errorOf(() => parsePipeline('extends: base.yaml\n\nbatch: {max_tokens: -1}\n', path.join(bad, 'task.yaml')));
  assert.ok(msg2.startsWith(`${path.join(bad, 'task.yaml')}:3: batch.max_tokens: must be ≥ 1`), msg2);
});

test('cycles, missing files and bad values of extends are refused with file and line', () => {
  const dir = tree({ 'a.yaml': 'extends: b.yaml\nmodel: demo\n', 'b.yaml': 'dataset: {path: demo}\nextends: a.yaml\n' });
  const cyc = errorOf(() => loadPipeline(path.join(dir, 'a.yaml')));
  assert.ok(cyc.startsWith(`${path.join(dir, 'b.yaml')}:2: extends: cycle a.yaml → b.yaml → a.yaml`), cyc);
  const self = errorOf(() => parsePipeline('model: demo\nextends: t.yaml\n', path.join(dir, 't.yaml')));
  assert.match(self, /t\.yaml:2: extends: cycle t\.yaml → t\.yaml/);
  const missing = errorOf(() => parsePipeline('model: demo\n\nextends: nowhere.yaml\n', path.join(dir, 'x.yaml')));
  assert.match(missing, /x\.yaml:3: extends: file not found/);
  const notString = errorOf(() => parsePipeline('extends: [a.yaml]\n', path.join(dir, 'y.yaml')));
  assert.match(notString, /y\.yaml:1: extends: must be the path of a pipeline file/);
});

test('agreement.reference (also the perplexity reference) must be one of the precisions', () => {
  const msg = errorOf(() => parsePipeline('model: demo\nprecisions: [fp32, nf4]\ndataset: {path: demo}\nagreement:\n  reference: q4\n', '/x/p.yaml'));
  assert.is(msg, '/x/p.yaml:5: agreement.reference: "q4" is not one of the precisions (fp32, nf4)');
});

test('the four paper pipelines share one part and differ in dataset, prompt and output', () => {
  const dir = path.resolve(import.meta.dirname, '../../pipelines/examples/paper');
  const cfgs = ['boolq', 'piqa', 'hellaswag', 'toxicity'].map((t) => loadPipeline(path.join(dir, `${t}.yaml`)));
  for (const c of cfgs) {
    assert.equal(c.precisions, ['fp32', 'nf4', 'llm-int8']);
    assert.is(c.model, path.resolve(dir, '../../../../shared/models/stories260K-onnx'));
    assert.is(c.dataset.limit, 200);
    assert.is(c.salience.limit, 8);
    assert.ok(c.measure.includes('perplexity') && c.measure.includes('salience'));
    assert.is(c.scoring.mode, 'first-token');
    assert.is(c.dataset.path, path.resolve(dir, `../../../../shared/datasets/${c.name}.csv`));
    assert.is(c.output, path.resolve(dir, `../../../runs/paper/${c.name}`));
  }
  assert.is(cfgs[0].dataset.prompt, 'Respond with True or False only.\n{prompt}\nAnswer:');
  for (const c of cfgs.slice(1)) assert.is(c.dataset.prompt, '{prompt}');
});

test.run();
