/**
 * Output metadata is portable: paths relative to the output folder, the model named and hashed,
 * never a cache path or any other absolute local path (Parquet key-value metadata, Arrow dump
 * metadata, summary.json). Plus the schema keys this issue adds.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RecordBatchFileReader } from 'apache-arrow';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { relativeToOutput } from '../../pipelines/output-metadata.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

async function parquetMetadata(file: string): Promise<Record<string, string>> {
  const kv = await duckdbQuery(`select decode(key)::varchar as k, decode(value)::varchar as v from parquet_kv_metadata('${file}')`);
  return Object.fromEntries(kv.map((r) => [r.k as string, r.v as string]));
}

/** Every string inside a JSON-able value (keys excluded). */
function strings(v: unknown): string[] {
  if (typeof v === 'string') {
    try {
      const parsed = JSON.parse(v);
      if (typeof parsed === 'object' && parsed !== null) return strings(parsed);
    } catch {
      // a plain string
    }
    return [v];
  }
  if (Array.isArray(v)) return v.flatMap(strings);
  if (v && typeof v === 'object') return Object.values(v).flatMap(strings);
  return [];
}

function assertNoLocalPaths(what: string, v: unknown, locals: string[]) {
  for (const s of strings(v)) {
    // ONNX node names look like absolute paths (/model/layers.0/…); a file path starts at a real root folder.
    assert.not.ok(path.isAbsolute(s) && existsSync(path.join('/', s.split('/')[1] ?? '')) && s.split('/')[1] !== '', `${what}: absolute path ${s}`);
    for (const l of locals) assert.not.ok(s.includes(l), `${what}: ${s} names ${l}`);
  }
}

test('relativeToOutput: POSIX, relative, "." for the folder itself', () => {
  assert.is(relativeToOutput('/a/runs/x', '/a/models/m'), '../../models/m');
  assert.is(relativeToOutput('/a/runs/x', '/a/runs/x'), '.');
  assert.is(relativeToOutput('/a/runs/x', '/a/runs/x/activations/f.arrow'), 'activations/f.arrow');
});

test('stories260K fp32 + nf4 (quantized into a cache): metadata and summary name no local path; relative paths resolve', async () => {
  const model = sharedPath('models/stories260K-onnx', 'output metadata');
  const data = sharedPath('datasets/boolq.csv', 'output metadata');
  if (!model || !data) return;
  const dir = tempDir('ql-meta-');
  const cache = path.join(dir, 'cache');
  writeFileSync(path.join(dir, 'p.yaml'), `model: ${model}\nprecisions: [fp32, nf4]\ndataset: {path: ${data}, limit: 3}\nlayers: [1]\nmeasure: [predictions, neurons]\nactivations: {limit: 5}\noutput: out\n`);
  const cfg = parsePipeline(readFileSync(path.join(dir, 'p.yaml'), 'utf8'), path.join(dir, 'p.yaml'));
  await runPipeline(cfg, { quiet: true, report: false, cacheDir: cache, log: () => undefined });
  const out = path.join(dir, 'out');
  const locals = [dir, cache, os.homedir(), '.cache'];
  for (const f of ['predictions', 'neurons']) {
    const m = await parquetMetadata(path.join(out, `${f}.parquet`));
    assertNoLocalPaths(`${f}.parquet`, m, locals);
    assert.is(path.resolve(out, m['quantlens.model']), path.resolve(model));
    assert.is(m['quantlens.model_name'], 'stories260K-onnx');
    assert.match(m['quantlens.model_hash'], /^[0-9a-f]{16,}$/);
    const precisions = JSON.parse(m['quantlens.precisions']) as { precision: string; path?: string; source: string }[];
    assert.is(path.resolve(out, precisions[0].path!), path.resolve(model, 'model.onnx'));
    assert.equal([precisions[1].precision, precisions[1].path, precisions[1].source], ['nf4', undefined, 'quantized']);
    const pipeline = JSON.parse(m['quantlens.pipeline']);
    assert.is(path.resolve(out, pipeline.dataset.path), path.resolve(data));
    assert.is(pipeline.output, '.');
  }
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assertNoLocalPaths('summary.json', summary, locals);
  assert.equal([summary.model.name, path.resolve(out, summary.model.path), path.resolve(out, summary.dataset.path)], ['stories260K-onnx', path.resolve(model), path.resolve(data)]);
  const dump = RecordBatchFileReader.from(readFileSync(path.join(out, 'activations', 'nf4-layer1.arrow')));
  dump.open();
  assertNoLocalPaths('activation dump', Object.fromEntries(dump.schema.metadata), locals);
  assert.is(dump.schema.metadata.get('quantlens.model_name'), 'stories260K-onnx');
});

test('schema: salience.normalise and predictions.prompt are validated like the other keys', () => {
  const base = 'model: demo\ndataset: {path: demo}\noutput: out\n';
  assert.is(parsePipeline(base, '/tmp/p.yaml').salience.normalise, 'abs');
  assert.is(parsePipeline(base, '/tmp/p.yaml').predictions.prompt, false);
  assert.is(parsePipeline(base + 'salience: {normalise: signed}\n', '/tmp/p.yaml').salience.normalise, 'signed');
  assert.throws(() => parsePipeline(base + 'salience: {normalise: abs_max}\n', '/tmp/p.yaml'), /p\.yaml:\d+.*salience\.normalise/);
  assert.throws(() => parsePipeline(base + 'predictions: {prompt: 3}\n', '/tmp/p.yaml'), /p\.yaml:\d+.*predictions\.prompt/);
});

test.run();
