/**
 * Micro-benchmark: parquetjs-lite (the design card's pick) vs hyparquet-writer (behind
 * sinks/parquet.ts) on 1M-row neurons-like and predictions-like tables.
 *
 *   node --import tsx bench/parquet-writers.ts [rows]
 *
 * Each writer gets the same rows, written to a temp folder and read back by DuckDB for a row
 * count, so a writer that is fast because it wrote nothing would show up. Prints rows/s per writer
 * per table and the file sizes.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { DuckDBInstance } from '@duckdb/node-api';
import { openParquetSink, type ColumnSpec } from '../sinks/parquet.ts';
import { mulberry32 as lcg } from '../core/random.ts';

const require = createRequire(import.meta.url);
// parquetjs-lite is CommonJS without types.
const parquetjs = require('parquetjs-lite') as {
  ParquetSchema: new (fields: Record<string, unknown>) => unknown;
  ParquetWriter: { openFile(schema: unknown, path: string, opts?: Record<string, unknown>): Promise<{ appendRow(r: object): Promise<void>; setMetadata(k: string, v: string): void; close(): Promise<void> }> };
};

const ROWS = Number(process.argv[2] ?? 1_000_000);
const BATCH = 8192; // rows per append(), like one operator batch of neuron/prediction rows
const PRECISIONS = ['fp32', 'nf4', 'llm-int8', 'q4', 'int8'];
const LABELS = ['true', 'false', 'A', 'B', 'C', 'D'];

interface Table {
  name: string;
  columns: ColumnSpec[];
  /** Column-wise batch of rows [start, start+n). */
  batch(start: number, n: number): Record<string, ArrayLike<unknown>>;
  pqjsSchema: Record<string, unknown>;
}


const neurons: Table = {
  name: 'neurons',
  columns: [
    { name: 'precision', type: 'utf8' },
    { name: 'layer', type: 'int32' },
    { name: 'neuron', type: 'int32' },
    { name: 'count', type: 'int64' },
    { name: 'mean', type: 'double' },
    { name: 'std', type: 'double' },
    { name: 'max_abs', type: 'double' },
    { name: 'dead', type: 'bool' },
    { name: 'salience', type: 'double', nullable: true },
  ],
  batch(start, n) {
    const r = lcg(start + 1);
    const precision: string[] = [], layer = new Int32Array(n), neuron = new Int32Array(n), count = new BigInt64Array(n);
    const mean = new Float64Array(n), std = new Float64Array(n), maxAbs = new Float64Array(n), dead: boolean[] = [], sal: (number | null)[] = [];
    for (let i = 0; i < n; i++) {
      const g = start + i;
      precision.push(PRECISIONS[Math.floor(g / 200_000) % PRECISIONS.length]);
      layer[i] = Math.floor(g / 11008) % 32;
      neuron[i] = g % 11008;
      count[i] = BigInt(100_000 + (g % 7));
      mean[i] = r() - 0.5;
      std[i] = r();
      maxAbs[i] = 3 * r();
      dead.push(r() < 0.01);
      sal.push(g % 10 === 0 ? null : r());
    }
    return { precision, layer, neuron, count, mean, std, max_abs: maxAbs, dead, salience: sal };
  },
  pqjsSchema: {
    precision: { type: 'UTF8' }, layer: { type: 'INT32' }, neuron: { type: 'INT32' }, count: { type: 'INT64' },
    mean: { type: 'DOUBLE' }, std: { type: 'DOUBLE' }, max_abs: { type: 'DOUBLE' }, dead: { type: 'BOOLEAN' },
    salience: { type: 'DOUBLE', optional: true },
  },
};

const predictions: Table = {
  name: 'predictions',
  columns: [
    { name: 'example_id', type: 'int32' },
    { name: 'precision', type: 'utf8' },
    { name: 'gold', type: 'utf8' },
    { name: 'predicted', type: 'utf8' },
    { name: 'correct', type: 'bool' },
    { name: 'gold_logprob', type: 'double', nullable: true },
    { name: 'top_ids', type: 'list<int32>' },
  ],
  batch(start, n) {
    const r = lcg(start + 7);
    const exampleId = new Int32Array(n), precision: string[] = [], gold: string[] = [], predicted: string[] = [];
    const correct: boolean[] = [], lp: (number | null)[] = [], top: Int32Array[] = [];
    for (let i = 0; i < n; i++) {
      const g = start + i;
      exampleId[i] = g % 200_000;
      precision.push(PRECISIONS[Math.floor(g / 200_000) % PRECISIONS.length]);
      gold.push(LABELS[g % LABELS.length]);
      const p = LABELS[Math.floor(r() * LABELS.length)];
      predicted.push(p);
      correct.push(p === gold[i]);
      lp.push(g % 50 === 0 ? null : -5 * r());
      top.push(Int32Array.from({ length: 5 }, () => Math.floor(r() * 32000)));
    }
    return { example_id: exampleId, precision, gold, predicted, correct, gold_logprob: lp, top_ids: top };
  },
  pqjsSchema: {
    example_id: { type: 'INT32' }, precision: { type: 'UTF8' }, gold: { type: 'UTF8' }, predicted: { type: 'UTF8' },
    correct: { type: 'BOOLEAN' }, gold_logprob: { type: 'DOUBLE', optional: true }, top_ids: { type: 'INT32', repeated: true },
  },
};

type Batches = Record<string, ArrayLike<unknown>>[];

async function withHyparquetWriter(t: Table, batches: Batches, file: string): Promise<void> {
  const sink = await openParquetSink(file, t.columns, { bench: 'parquet-writers' });
  for (const b of batches) await sink.append(b);
  await sink.close();
}

async function withParquetjsLite(t: Table, batches: Batches, file: string): Promise<void> {
  const w = await parquetjs.ParquetWriter.openFile(new parquetjs.ParquetSchema(t.pqjsSchema), file, { rowGroupSize: 65_536 });
  w.setMetadata('bench', 'parquet-writers');
  for (const cols of batches) {
    const n = cols[t.columns[0].name].length;
    const names = Object.keys(cols);
    for (let i = 0; i < n; i++) {
      // parquetjs-lite is row-oriented: one object per row, BigInt → number, typed lists → arrays.
      const row: Record<string, unknown> = {};
      for (const k of names) {
        let v = cols[k][i];
        if (typeof v === 'bigint') v = Number(v);
        else if (v instanceof Int32Array) v = Array.from(v);
        if (v !== null) row[k] = v;
      }
      await w.appendRow(row);
    }
  }
  await w.close();
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'quantlens-bench-'));
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
const writers = { 'hyparquet-writer': withHyparquetWriter, 'parquetjs-lite': withParquetjsLite };
console.log(`${ROWS.toLocaleString('en')} rows per table, appended ${BATCH} rows at a time`);
try {
  for (const t of [neurons, predictions]) {
    // Input batches are built before timing so only the writers are measured (the pipeline hands
    // the sink column-wise batches; converting them to row objects is part of parquetjs-lite's cost).
    const batches: Batches = [];
    for (let s = 0; s < ROWS; s += BATCH) batches.push(t.batch(s, Math.min(BATCH, ROWS - s)));
    for (const [name, write] of Object.entries(writers)) {
      const file = path.join(dir, `${t.name}-${name}.parquet`);
      const t0 = performance.now();
      await write(t, batches, file);
      const ms = performance.now() - t0;
      const reader = await con.runAndReadAll(`SELECT count(*)::INTEGER AS n FROM read_parquet('${file}')`);
      const n = reader.getRowObjectsJS()[0].n;
      if (n !== ROWS) throw new Error(`${name} wrote ${n} rows, expected ${ROWS}`);
      const rate = Math.round(ROWS / (ms / 1000));
      console.log(`${t.name.padEnd(12)} ${name.padEnd(17)} ${rate.toLocaleString('en').padStart(11)} rows/s  ${(ms / 1000).toFixed(2)} s  ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB`);
    }
  }
} finally {
  con.closeSync();
  rmSync(dir, { recursive: true, force: true });
}
