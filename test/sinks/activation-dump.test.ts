import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { type RecordBatch, RecordBatchFileReader, tableFromIPC } from 'apache-arrow';
import { spawnSync } from 'node:child_process';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import type { ActivationChunk } from '../../core/types.ts';
import { openActivationDump } from '../../sinks/activation-dump.ts';
import { QuantlensError } from '../../core/errors.ts';
import { tempDir } from '../helpers/temp.ts';
import { mulberry32 as rng } from '../../core/random.ts';

const dir = tempDir('quantlens-dump-test-');
let con: DuckDBConnection;
test.before(async () => {
  con = await (await DuckDBInstance.create(':memory:')).connect();
});
test.after(() => {
  con.closeSync();
  rmSync(dir, { recursive: true, force: true });
});


function randomChunk(r: () => number, width: number, firstExample: number, examples: number, layer: number, precision: string): ActivationChunk {
  const ex: number[] = [], pos: number[] = [];
  for (let e = 0; e < examples; e++) {
    const len = 1 + Math.floor(r() * 5);
    for (let p = 0; p < len; p++) {
      ex.push(firstExample + e);
      pos.push(p);
    }
  }
  return {
    batchIndex: firstExample, precision, layer, tensor: `mlp.${layer}`, width, rows: ex.length,
    values: Float32Array.from({ length: ex.length * width }, () => r() * 2 - 1),
    exampleId: Int32Array.from(ex), position: Int32Array.from(pos), tokenId: Int32Array.from(ex, () => Math.floor(r() * 32000)),
  };
}

interface Row { example_id: number; position: number; token_id: number; layer: number; precision: string; values: number[] }

/** Brute force: every row of every chunk in order, filtered by example id, cut at limit. */
function expectedRows(chunks: ActivationChunk[], every: number, limit: number): Row[] {
  const all: Row[] = [];
  for (const c of chunks) {
    for (let i = 0; i < c.rows; i++) {
      all.push({ example_id: c.exampleId[i], position: c.position[i], token_id: c.tokenId[i], layer: c.layer, precision: c.precision, values: Array.from(c.values.subarray(i * c.width, (i + 1) * c.width)) });
    }
  }
  return all.filter((row) => row.example_id % every === 0).slice(0, limit);
}

function makeChunks(seed: number, W: number): ActivationChunk[] {
  const r = rng(seed);
  const out: ActivationChunk[] = [];
  for (let b = 0; b < 5; b++) for (const [layer, prec] of [[0, 'fp32'], [3, 'q4']] as const) out.push(randomChunk(r, W, b * 4, 4, layer, prec));
  return out;
}

for (const [every, limit] of [[1, Infinity], [3, Infinity], [2, 25], [1, 7], [5, 0]] as const) {
  test(`arrow dump every=${every} limit=${limit} reads back as the sampled rows`, async () => {
    const W = 6;
    const chunks = makeChunks(every * 100 + (limit === Infinity ? 1 : limit), W);
    const want = expectedRows(chunks, every, limit);
    const file = path.join(dir, `dump-${every}-${limit}.arrows`);
    const dump = await openActivationDump(file, { every, limit, metadata: { model: 'stories260K' } });
    for (const c of chunks) await dump.write(c);
    await dump.close();
    assert.is(dump.rows, want.length);
    const t = tableFromIPC(readFileSync(file));
    assert.is(t.numRows, want.length);
    assert.is(t.schema.metadata.get('model'), 'stories260K');
    const got = Array.from({ length: t.numRows }, (_, i) => {
      const row = t.get(i)!;
      return { example_id: row.example_id, position: row.position, token_id: row.token_id, layer: Number(row.layer), precision: row.precision, values: Array.from(row.values as Iterable<number>) };
    });
    assert.equal(got, want);
  });
}

test('parquet dump: values as list<float>, read by DuckDB and hyparquet, with sampling and metadata', async () => {
  const W = 9;
  const chunks = makeChunks(77, W);
  const want = expectedRows(chunks, 2, 30);
  const file = path.join(dir, 'dump.parquet');
  const dump = await openActivationDump(file, { format: 'parquet', every: 2, limit: 30, metadata: { precision_set: 'fp32,q4' } });
  for (const c of chunks) await dump.write(c);
  await dump.close();
  const types = (await con.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${file}')`)).getRowObjectsJS();
  assert.equal(types.map((t) => `${t.column_name}:${t.column_type}`), ['example_id:INTEGER', 'position:INTEGER', 'token_id:INTEGER', 'layer:INTEGER', 'precision:VARCHAR', 'values:FLOAT[]']);
  const duck = (await con.runAndReadAll(`SELECT * FROM read_parquet('${file}')`)).getRowObjectsJS();
  assert.equal(duck, want as unknown as typeof duck);
  const hyp = await parquetReadObjects({ file: await asyncBufferFromFile(file) });
  assert.equal(hyp, want as unknown as typeof hyp);
  const kv = (await con.runAndReadAll(`SELECT decode(value) AS v FROM parquet_kv_metadata('${file}') WHERE decode(key) = 'precision_set'`)).getRowObjectsJS();
  assert.is(kv[0].v, 'fp32,q4');
});

test('.arrow dump is an IPC file (footer) with layer int32: apache-arrow file reader, and pyarrow/polars when installed', async () => {
  const W = 4;
  const chunks = makeChunks(11, W);
  const want = expectedRows(chunks, 1, Infinity);
  const file = path.join(dir, 'fp32-layer0.arrow');
  const dump = await openActivationDump(file, { metadata: { 'quantlens.model': 'stories260K' } });
  for (const c of chunks) await dump.write(c);
  await dump.close();
  const reader = RecordBatchFileReader.from(readFileSync(file));
  reader.open();
  assert.is(String(reader.schema.fields.find((f) => f.name === 'layer')!.type), 'Int32');
  assert.is(reader.schema.metadata.get('quantlens.model'), 'stories260K');
  const got: Row[] = [];
  for (let b = 0; b < reader.numRecordBatches; b++) {
    const batch = reader.readRecordBatch(b) as RecordBatch;
    for (let i = 0; i < batch.numRows; i++) {
      const row = batch.get(i)!;
      got.push({ example_id: row.example_id, position: row.position, token_id: row.token_id, layer: row.layer, precision: row.precision, values: Array.from(row.values as Iterable<number>) });
    }
  }
  assert.equal(got, want);
  // pyarrow's and polars' file readers, when this machine has them.
  const script = [
    'import sys, json',
    'import pyarrow.ipc as ipc',
    't = ipc.open_file(sys.argv[1]).read_all()',
    'out = {"rows": t.num_rows, "layer": str(t.schema.field("layer").type), "sum": sum(t.column("layer").to_pylist())}',
    'try:',
    '    import polars as pl',
    '    out["polars_rows"] = pl.read_ipc(sys.argv[1], memory_map=False).height',
    'except ImportError:',
    '    pass',
    'print(json.dumps(out))',
  ].join('\n');
  const probe = spawnSync('python3', ['-c', 'import pyarrow'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.log('SKIP pyarrow/polars read of the .arrow dump: python3 -c "import pyarrow" fails here');
    return;
  }
  const py = spawnSync('python3', ['-c', script, file], { encoding: 'utf8' });
  assert.is(py.status, 0, py.stderr);
  const res = JSON.parse(py.stdout);
  assert.equal([res.rows, res.layer, res.sum], [want.length, 'int32', want.reduce((a, r) => a + r.layer, 0)]);
  if (res.polars_rows !== undefined) assert.is(res.polars_rows, want.length);
});

test('a chunk of another width is refused; bad options are CONFIG errors; abort leaves nothing', async () => {
  const sub = mkdtempSync(path.join(dir, 'w-'));
  const file = path.join(sub, 'd.arrows');
  const r = rng(3);
  const dump = await openActivationDump(file);
  await dump.write(randomChunk(r, 4, 0, 2, 0, 'fp32'));
  try {
    await dump.write(randomChunk(r, 5, 0, 2, 0, 'fp32'));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.is((e as QuantlensError).code, 'STATE');
  }
  await dump.abort();
  assert.equal(readdirSync(sub), []);
  for (const bad of [{ every: 0 }, { limit: -1 }, { format: 'csv' }]) {
    try {
      await openActivationDump(file, bad as never);
      assert.unreachable();
    } catch (e) {
      assert.is((e as QuantlensError).code, 'CONFIG');
    }
  }
  assert.not.ok(existsSync(file));
});

test.run();
