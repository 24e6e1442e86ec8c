import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { openParquetSink, writeParquetTable, type ColumnSpec } from '../../sinks/parquet.ts';
import { QuantlensError } from '../../core/errors.ts';
import { mulberry32 as rng } from '../../core/random.ts';
import { openDuckdb, type DuckdbSession } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

const dir = tempDir('quantlens-parquet-test-');
let db: DuckdbSession;

test.before(async () => {
  db = await openDuckdb();
});
test.after(() => db.close());

const sql = (q: string) => db.sql(q);

const ALL_TYPES: ColumnSpec[] = [
  { name: 'i32', type: 'int32' },
  { name: 'i32n', type: 'int32', nullable: true },
  { name: 'i64', type: 'int64' },
  { name: 'i64n', type: 'int64', nullable: true },
  { name: 'f64', type: 'double' },
  { name: 'f64n', type: 'double', nullable: true },
  { name: 's', type: 'utf8' },
  { name: 'sn', type: 'utf8', nullable: true },
  { name: 'b', type: 'bool' },
  { name: 'bn', type: 'bool', nullable: true },
  { name: 'l', type: 'list<int32>' },
  { name: 'ln', type: 'list<int32>', nullable: true },
  { name: 'lf', type: 'list<float>' },
];

/** Random rows for every type, with nulls, bigints beyond 2^53, empty lists, unicode. */
function randomRows(r: () => number, n: number) {
  const rows: Record<string, unknown>[] = [];
  const words = ['fp32', 'nf4', 'llm-int8', 'héllo wörld', '', 'a,"quoted"\nline', '日本語'];
  for (let i = 0; i < n; i++) {
    const nul = () => r() < 0.2;
    const big = BigInt(Math.floor(r() * 2 ** 31)) * 2n ** 32n + BigInt(Math.floor(r() * 2 ** 32));
    rows.push({
      i32: Math.floor(r() * 2 ** 32) - 2 ** 31,
      i32n: nul() ? null : Math.floor(r() * 1000) - 500,
      i64: r() < 0.5 ? -big : big,
      i64n: nul() ? null : Math.floor(r() * 1e12) - 5e11, // numbers are accepted for int64
      f64: (r() - 0.5) * 1e6,
      f64n: nul() ? null : r(),
      s: words[Math.floor(r() * words.length)],
      sn: nul() ? null : `row ${i}`,
      b: r() < 0.5,
      bn: nul() ? null : r() < 0.5,
      l: Array.from({ length: Math.floor(r() * 4) }, () => Math.floor(r() * 2 ** 32) - 2 ** 31),
      ln: nul() ? null : Int32Array.from({ length: Math.floor(r() * 3) }, () => Math.floor(r() * 100)),
      lf: Float32Array.from({ length: Math.floor(r() * 3) }, () => r() - 0.5),
    });
  }
  return rows;
}

function columnsOf(rows: Record<string, unknown>[], specs: ColumnSpec[]): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const s of specs) out[s.name] = rows.map((row) => row[s.name]);
  return out;
}

/** What a reader should return for an input value (independent of the writer). */
function expected(spec: ColumnSpec, v: unknown): unknown {
  if (v === null) return null;
  if (spec.type === 'int64') return BigInt(v as number | bigint);
  if (spec.type === 'list<int32>') return Array.from(v as ArrayLike<number>);
  if (spec.type === 'list<float>') return Array.from(v as ArrayLike<number>, (x) => Math.fround(x));
  return v;
}

function normalize(v: unknown): unknown {
  if (v === undefined) return null; // hyparquet reads a null list as undefined
  if (v instanceof Int32Array || v instanceof Float32Array) return Array.from(v);
  return v;
}

test('every column type round-trips through DuckDB and hyparquet, across row-group boundaries', async () => {
  const r = rng(11);
  const rows = randomRows(r, 100);
  const file = path.join(dir, 'all-types.parquet');
  const sink = await openParquetSink(file, ALL_TYPES, { model: 'stories260K' }, { rowGroupRows: 7 });
  // Uneven appends so batches straddle row groups.
  for (let at = 0, k = 1; at < rows.length; at += k, k = (k * 3) % 17 + 1) {
    const part = columnsOf(rows.slice(at, at + k), ALL_TYPES);
    part.i32 = Int32Array.from(part.i32 as number[]) as unknown as unknown[]; // typed-array fast path too
    await sink.append(part);
  }
  assert.is(sink.rows, 100);
  await sink.close();

  const types = await sql(`DESCRIBE SELECT * FROM read_parquet('${file}')`);
  const want: Record<string, string> = { int32: 'INTEGER', int64: 'BIGINT', double: 'DOUBLE', utf8: 'VARCHAR', bool: 'BOOLEAN', 'list<int32>': 'INTEGER[]', 'list<float>': 'FLOAT[]' };
  assert.equal(types.map((t) => [t.column_name, t.column_type]), ALL_TYPES.map((c) => [c.name, want[c.type]]));

  const groups = await sql(`SELECT count(DISTINCT row_group_id)::INTEGER AS g FROM parquet_metadata('${file}')`);
  assert.is(groups[0].g, Math.ceil(100 / 7));

  const duck = await sql(`SELECT * FROM read_parquet('${file}')`);
  const hyp = await parquetReadObjects({ file: await asyncBufferFromFile(file) });
  assert.is(duck.length, 100);
  assert.is(hyp.length, 100);
  rows.forEach((row, i) => {
    for (const c of ALL_TYPES) {
      const e = expected(c, row[c.name]);
      assert.equal(normalize(duck[i][c.name]), e, `DuckDB row ${i} ${c.name}`);
      assert.equal(normalize(hyp[i][c.name]), e, `hyparquet row ${i} ${c.name}`);
    }
  });
});

test('buffers that grow over many appends and are refilled after each row group keep every value', async () => {
  // Row groups larger than the buffers' first capacity (1024 rows), appends of uneven sizes: the
  // buffers double mid-group, are refilled after a full group, and the last group is partial.
  const r = rng(12);
  const rows = randomRows(r, 6000);
  const file = path.join(dir, 'grown.parquet');
  const sink = await openParquetSink(file, ALL_TYPES, {}, { rowGroupRows: 2500 });
  for (let at = 0, k = 1; at < rows.length; at += k, k = (k * 7) % 1499 + 1) await sink.append(columnsOf(rows.slice(at, at + k), ALL_TYPES));
  await sink.close();
  const meta = await parquetMetadataAsync(await asyncBufferFromFile(file));
  assert.equal(meta.row_groups.map((g) => Number(g.num_rows)), [2500, 2500, 1000]);
  const hyp = await parquetReadObjects({ file: await asyncBufferFromFile(file) });
  assert.is(hyp.length, rows.length);
  rows.forEach((row, i) => {
    for (const c of ALL_TYPES) assert.equal(normalize(hyp[i][c.name]), expected(c, row[c.name]), `row ${i} ${c.name}`);
  });
});

test('an open sink holds memory for the rows it buffers, not for a whole row group', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc (npm test does)');
  const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  gc();
  const before = used();
  // Like a checkpoint part of predictions: a few rows in a sink whose row group is 65,536 rows.
  const sinks = [];
  for (let k = 0; k < 16; k++) {
    const sink = await openParquetSink(path.join(dir, `small-${k}.parquet`), ALL_TYPES, {});
    await sink.append(columnsOf(randomRows(rng(k), 10), ALL_TYPES));
    sinks.push(sink);
  }
  gc();
  const open = used() - before;
  for (const s of sinks) await s.close();
  gc();
  const closed = used() - before;
  // A whole row group of these 13 columns is ≈ 6.5 MB per sink (≈ 100 MB for 16); 1024 rows ≈ 0.1 MB.
  assert.ok(open < 16 * 2 ** 20, `16 open sinks of 10 rows hold ${(open / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(closed < 4 * 2 ** 20, `16 closed sinks still hold ${(closed / 2 ** 20).toFixed(1)} MiB`);
  for (let k = 0; k < 16; k++) assert.is((await parquetReadObjects({ file: await asyncBufferFromFile(path.join(dir, `small-${k}.parquet`)) })).length, 10);
});

test('key-value metadata is readable by DuckDB parquet_kv_metadata and hyparquet', async () => {
  const file = path.join(dir, 'meta.parquet');
  const meta = { model: 'stories260K', model_hash: 'sha256:abc123', precision: 'nf4', ort_version: '1.30.0', session: '{"threads":2}' };
  await writeParquetTable(file, [{ name: 'x', type: 'int32' }], meta, { x: [1, 2, 3] });
  const kv = await sql(`SELECT decode(key) AS k, decode(value) AS v FROM parquet_kv_metadata('${file}')`);
  assert.equal(Object.fromEntries(kv.map((e) => [e.k, e.v])), meta);
  const md = await parquetMetadataAsync(await asyncBufferFromFile(file));
  assert.equal(Object.fromEntries((md.key_value_metadata ?? []).map((e) => [e.key, e.value])), meta);
  assert.equal((await sql(`SELECT sum(x)::INTEGER AS s FROM read_parquet('${file}')`))[0].s, 6);
});

test('an empty table is a valid file with the declared types', async () => {
  const file = path.join(dir, 'empty.parquet');
  const sink = await openParquetSink(file, ALL_TYPES, {});
  await sink.close();
  const types = await sql(`DESCRIBE SELECT * FROM read_parquet('${file}')`);
  assert.is(types.length, ALL_TYPES.length);
  assert.is(types.find((t) => t.column_name === 'l')!.column_type, 'INTEGER[]');
  assert.is((await sql(`SELECT count(*)::INTEGER AS n FROM read_parquet('${file}')`))[0].n, 0);
});

test('the final name appears only on close; abort leaves nothing behind', async () => {
  const sub = mkdtempSync(path.join(dir, 'abort-'));
  const file = path.join(sub, 'table.parquet');
  const sink = await openParquetSink(file, [{ name: 'x', type: 'int32' }], {}, { rowGroupRows: 10 });
  await sink.append({ x: Int32Array.from({ length: 35 }, (_, i) => i) });
  assert.not.ok(existsSync(file), 'final name must not exist while writing');
  assert.is(readdirSync(sub).length, 1, 'exactly one temporary file while writing');
  await sink.abort();
  assert.equal(readdirSync(sub), []);

  const ok = await openParquetSink(file, [{ name: 'x', type: 'int32' }], {});
  await ok.append({ x: [1] });
  await ok.close();
  assert.equal(readdirSync(sub), ['table.parquet']);
});

test('bad values are refused with a QuantlensError naming column and row; the sink then aborts cleanly', async () => {
  const sub = mkdtempSync(path.join(dir, 'bad-'));
  const file = path.join(sub, 't.parquet');
  const cols: ColumnSpec[] = [{ name: 'a', type: 'int32' }, { name: 's', type: 'utf8' }];
  const cases: [Record<string, ArrayLike<unknown>>, RegExp][] = [
    [{ a: [1, null], s: ['x', 'y'] }, /column "a" row 1: null/],
    [{ a: [1, 2.5], s: ['x', 'y'] }, /column "a" row 1: expected int32/],
    [{ a: [2 ** 31], s: ['x'] }, /expected int32/],
    [{ a: [1], s: [3] }, /column "s" row 0: expected a string/],
    [{ a: [1, 2], s: ['x'] }, /has 1 rows, expected 2/],
    [{ a: [1] }, /missing column "s"/],
    [{ a: [1], s: ['x'], z: [1] }, /unknown column "z"/],
  ];
  for (const [data, msg] of cases) {
    const sink = await openParquetSink(file, cols, {});
    try {
      await sink.append(data);
      assert.unreachable('append should throw');
    } catch (e) {
      assert.instance(e, QuantlensError);
      assert.match((e as Error).message, msg);
      assert.ok((e as Error).message.includes(file), 'message names the file');
    }
    await sink.abort();
  }
  assert.equal(readdirSync(sub), []);
  const i64 = await openParquetSink(file, [{ name: 'v', type: 'int64' }], {});
  try {
    await i64.append({ v: [2 ** 60] }); // not a safe integer: must be a bigint
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /expected int64/);
  }
  await i64.abort();
});

test('a 1M-row streaming write keeps the heap flat and writes every row', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc (npm test does)');
  const file = path.join(dir, 'big.parquet');
  const cols: ColumnSpec[] = [
    { name: 'neuron', type: 'int32' },
    { name: 'count', type: 'int64' },
    { name: 'mean', type: 'double' },
    { name: 'precision', type: 'utf8' },
  ];
  // Row groups a multiple of the append size, so the samples below fall right after a flush and
  // compare like with like (an empty buffer), not a varying part of one row group.
  const N = 1_000_000, BATCH = 10_000, RG = 50_000;
  const sink = await openParquetSink(file, cols, {}, { rowGroupRows: RG });
  let sumNeuron = 0, sumMean = 0;
  const heap: number[] = [];
  // JS heap plus ArrayBuffer memory (typed-array buffers and the encoder's output buffer live there).
  const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  for (let s = 0; s < N; s += BATCH) {
    const neuron = Int32Array.from({ length: BATCH }, (_, i) => (s + i) % 11008);
    const count = BigInt64Array.from({ length: BATCH }, (_, i) => BigInt(s + i));
    const mean = Float64Array.from({ length: BATCH }, (_, i) => Math.sin(s + i));
    const precision = Array.from({ length: BATCH }, (_, i) => ((s + i) % 2 ? 'fp32' : 'nf4'));
    for (let i = 0; i < BATCH; i++) {
      sumNeuron += neuron[i];
      sumMean += mean[i];
    }
    await sink.append({ neuron, count, mean, precision });
    if (s + BATCH === 200_000 || s + BATCH === N) {
      gc();
      gc();
      heap.push(used());
    }
  }
  await sink.close();
  gc();
  heap.push(used());
  const growth = Math.max(heap[1], heap[2]) - heap[0];
  // Holding 800k more rows would need > 800k × 28 bytes ≈ 22 MB even packed; allow 8 MB of noise.
  assert.ok(growth < 8 * 2 ** 20, `heap + array buffers grew ${(growth / 2 ** 20).toFixed(1)} MiB between 200k and 1M rows`);
  const [agg] = await sql(`SELECT count(*)::INTEGER AS n, sum(neuron)::DOUBLE AS sn, sum(mean) AS sm, max(count) AS mc,
    count(*) FILTER (WHERE precision = 'nf4')::INTEGER AS nf4 FROM read_parquet('${file}')`);
  assert.is(agg.n, N);
  assert.is(agg.sn, sumNeuron);
  assert.ok(Math.abs((agg.sm as number) - sumMean) < 1e-6, `sum(mean) ${agg.sm} vs ${sumMean}`);
  assert.is(agg.mc, BigInt(N - 1));
  assert.is(agg.nf4, N / 2);
  const [g] = await sql(`SELECT count(DISTINCT row_group_id)::INTEGER AS g, max(row_group_num_rows)::INTEGER AS m FROM parquet_metadata('${file}')`);
  assert.is(g.g, Math.ceil(N / RG));
  assert.is(g.m, RG);
});

test.run();
