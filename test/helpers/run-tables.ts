/**
 * Compare the Parquet tables of two run folders, row by row after sorting by key columns:
 * strings, booleans, integers (int32 and int64) and lists must be identical; doubles within a
 * relative tolerance. Used by the shard-merge and resume tests (the reference is a single,
 * uninterrupted run of the same pipeline).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';

export type Row = Record<string, unknown>;

export async function readTable(file: string): Promise<{ rows: Row[]; doubles: Set<string> }> {
  const buf = await asyncBufferFromFile(file);
  const meta = await parquetMetadataAsync(buf);
  const doubles = new Set(parquetSchema(meta).children.filter((c) => c.element.type === 'DOUBLE' || c.element.type === 'FLOAT').map((c) => c.element.name));
  const rows = Number(meta.num_rows) === 0 ? [] : ((await parquetReadObjects({ file: buf, metadata: meta })) as Row[]);
  return { rows, doubles };
}

function keyOf(r: Row, keys: string[]): string {
  return JSON.stringify(keys.map((k) => (typeof r[k] === 'bigint' ? String(r[k]) : r[k])));
}

export function closeEnough(a: number, b: number, rel: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  if (a === b) return true; // also ±Infinity
  return Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b)) + 1e-300;
}

/**
 * Differences between table `name` of two run folders (empty = equal). Rows are matched by
 * `keys`; `rel` bounds double columns; `exactOrder` also requires the same row order.
 */
export async function tableDifferences(dirA: string, dirB: string, name: string, keys: string[], rel: number, opts: { exactOrder?: boolean } = {}): Promise<string[]> {
  const fa = path.join(dirA, `${name}.parquet`);
  const fb = path.join(dirB, `${name}.parquet`);
  if (!existsSync(fa) || !existsSync(fb)) return [`${name}.parquet missing in ${existsSync(fa) ? dirB : dirA}`];
  const a = await readTable(fa);
  const b = await readTable(fb);
  const out: string[] = [];
  if (a.rows.length !== b.rows.length) return [`${name}: ${a.rows.length} rows vs ${b.rows.length}`];
  if (a.rows.length === 0) return [`${name}: no rows`];
  if (opts.exactOrder) {
    for (let i = 0; i < a.rows.length; i++) if (keyOf(a.rows[i], keys) !== keyOf(b.rows[i], keys)) return [`${name}: row ${i} is ${keyOf(a.rows[i], keys)} vs ${keyOf(b.rows[i], keys)}`];
  }
  const byKey = new Map<string, Row>();
  for (const r of b.rows) {
    const k = keyOf(r, keys);
    if (byKey.has(k)) return [`${name}: key ${k} is not unique`];
    byKey.set(k, r);
  }
  for (const ra of a.rows) {
    const k = keyOf(ra, keys);
    const rb = byKey.get(k);
    if (!rb) {
      out.push(`${name}: row ${k} only in ${dirA}`);
      continue;
    }
    for (const col of Object.keys(ra)) {
      const x = ra[col];
      const y = rb[col];
      const same =
        a.doubles.has(col) && typeof x === 'number' && typeof y === 'number'
          ? closeEnough(x, y, rel)
          : JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)) === JSON.stringify(y, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));
      if (!same) out.push(`${name} ${k}.${col}: ${String(x)} vs ${String(y)}`);
    }
    if (out.length > 10) break;
  }
  return out;
}

/** Key columns of every table a run writes. */
export const TABLE_KEYS: Record<string, string[]> = {
  predictions: ['example_id', 'precision'],
  neurons: ['precision', 'layer', 'tensor', 'neuron'],
  dead: ['precision', 'layer', 'tensor'],
  correlation: ['precision', 'layer', 'tensor', 'bin_lo'],
  calibration: ['precision', 'scheme', 'bin'],
  agreement: ['precision', 'layer', 'tensor', 'metric'],
};
