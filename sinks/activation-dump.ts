/**
 * Optional raw activation dumps: the per-token activation rows of selected examples, for looking
 * at with pandas/pyarrow/polars/DuckDB. Arrow IPC by default (zero-copy from the chunk): the IPC
 * file format for `.arrow` (with footer; pyarrow.ipc.open_file, polars.read_ipc), the stream format
 * for `.arrows` (sinks/arrow-ipc.ts); Parquet on request. `layer` is int32 in both, as everywhere.
 *
 * Parquet layout: one row per token with `values` as list<float>, not one column per neuron.
 * MLP widths are thousands of neurons (e.g. 11008); thousands of columns make the footer carry a
 * column chunk per neuron per row group (megabytes of metadata), DuckDB/pandas slow on wide scans,
 * and the layout differs per model. A list column is one schema for every model, DuckDB reads it
 * as FLOAT[] (cast to FLOAT[width] or UNNEST as needed), and pandas as one array per row
 * (np.stack(df.values) gives the [rows, width] matrix).
 *
 * Sampling is by example id, not by arrival order: `every: k` keeps the examples with
 * example_id % k === 0, so every precision, layer and shard keeps the same examples and dumps can
 * be compared row by row. `limit` caps the total number of rows written (later rows are dropped).
 */
import * as arrow from 'apache-arrow';
import { activationSchema, chunkToRecordBatch } from '../operators/chunk.ts';
import type { ActivationChunk } from '../core/types.ts';
import { QuantlensError } from '../core/errors.ts';
import { openArrowIpcSink, type ArrowIpcSink } from './arrow-ipc.ts';
import { openParquetSink, type ColumnSpec, type ParquetSink } from './parquet.ts';

export interface ActivationDumpOptions {
  format?: 'arrow' | 'parquet';
  /** Keep examples whose example_id is a multiple of `every` (default 1: all). */
  every?: number;
  /** Maximum number of rows written in total (default: no limit). */
  limit?: number;
  /** Model, precision settings etc.: Arrow schema metadata / Parquet key-value metadata. */
  metadata?: Record<string, string>;
}

export interface ActivationDump {
  /** Write the sampled rows of a chunk. The chunk's memory is not referenced after this resolves. */
  write(chunk: ActivationChunk): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
  readonly rows: number;
}

export const ACTIVATION_DUMP_PARQUET_COLUMNS: ColumnSpec[] = [
  { name: 'example_id', type: 'int32' },
  { name: 'position', type: 'int32' },
  { name: 'token_id', type: 'int32' },
  { name: 'layer', type: 'int32' },
  { name: 'precision', type: 'utf8' },
  { name: 'values', type: 'list<float>' },
];

/** Indices of the rows to keep, or null when the whole chunk is kept. */
function keptRows(chunk: ActivationChunk, every: number, room: number): Int32Array | null {
  if (every === 1 && chunk.rows <= room) return null;
  const keep: number[] = [];
  for (let r = 0; r < chunk.rows && keep.length < room; r++) if (chunk.exampleId[r] % every === 0) keep.push(r);
  return Int32Array.from(keep);
}

/** A new chunk holding only the given rows (copied). */
function selectRows(chunk: ActivationChunk, rows: Int32Array): ActivationChunk {
  const w = chunk.width;
  const values = new Float32Array(rows.length * w);
  rows.forEach((r, i) => values.set(chunk.values.subarray(r * w, (r + 1) * w), i * w));
  const pick = (a: Int32Array) => Int32Array.from(rows, (r) => a[r]);
  return { ...chunk, rows: rows.length, values, exampleId: pick(chunk.exampleId), position: pick(chunk.position), tokenId: pick(chunk.tokenId) };
}

export async function openActivationDump(finalPath: string, opts: ActivationDumpOptions = {}): Promise<ActivationDump> {
  const format = opts.format ?? 'arrow';
  const every = opts.every ?? 1;
  const limit = opts.limit ?? Infinity;
  const metadata = opts.metadata ?? {};
  if (format !== 'arrow' && format !== 'parquet') throw new QuantlensError('CONFIG', `activation dump format must be "arrow" or "parquet", got "${format}"`, finalPath);
  if (!Number.isInteger(every) || every < 1) throw new QuantlensError('CONFIG', `activation dump "every" must be a positive integer, got ${every}`, finalPath);
  if (!(limit === Infinity || (Number.isInteger(limit) && limit >= 0))) throw new QuantlensError('CONFIG', `activation dump "limit" must be a non-negative integer, got ${limit}`, finalPath);

  let width: number | null = null;
  let rows = 0;
  let ipc: ArrowIpcSink | null = null;
  let pq: ParquetSink | null = null;
  if (format === 'arrow') ipc = await openArrowIpcSink(finalPath);
  // Parquet row groups hold ~1M floats whatever the width (the list encoder works on JS arrays),
  // so the sink is opened once the first chunk tells the width.
  const parquet = async (w: number) =>
    (pq ??= await openParquetSink(finalPath, ACTIVATION_DUMP_PARQUET_COLUMNS, metadata, { rowGroupRows: Math.max(16, Math.floor(2 ** 20 / Math.max(1, w))) }));

  const schemaWithMetadata = (w: number) => {
    const s = activationSchema(w);
    return new arrow.Schema(s.fields, new Map(Object.entries(metadata)));
  };

  return {
    get rows() {
      return rows;
    },
    async write(chunk) {
      if (width === null) width = chunk.width;
      else if (chunk.width !== width) {
        throw new QuantlensError('STATE', `chunk of ${chunk.tensor} has width ${chunk.width}, the dump holds width ${width}; dump one width per file`, finalPath);
      }
      const room = limit - rows;
      if (room <= 0 || chunk.rows === 0) return;
      const pick = keptRows(chunk, every, room);
      const part = pick ? selectRows(chunk, pick) : chunk;
      if (part.rows === 0) return;
      if (ipc) {
        const rb = chunkToRecordBatch(part);
        await ipc.write(new arrow.RecordBatch(schemaWithMetadata(width), rb.data));
      } else {
        const w = part.width;
        const values = Array.from({ length: part.rows }, (_, r) => part.values.subarray(r * w, (r + 1) * w));
        await (await parquet(w)).append({
          example_id: part.exampleId,
          position: part.position,
          token_id: part.tokenId,
          layer: new Int32Array(part.rows).fill(part.layer),
          precision: new Array(part.rows).fill(part.precision),
          values,
        });
      }
      rows += part.rows;
    },
    async close() {
      if (ipc) await ipc.close(schemaWithMetadata(width ?? 0));
      else await (await parquet(width ?? 1)).close();
    },
    async abort() {
      if (ipc) await ipc.abort();
      else await pq?.abort();
    },
  };
}
