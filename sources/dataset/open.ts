/**
 * One entry point for dataset files: pick the reader by format, then apply the selection
 * (skip → limit → shard) while streaming. Every record keeps its row index in the file as
 * example_id, so ids agree across skip/limit/shard and across shards merged later.
 */
import path from 'node:path';
import type { DatasetRecord } from '../../core/types.ts';
import { QuantlensError } from '../../core/errors.ts';
import { readCsvHeader, readCsvRecords } from './csv.ts';
import { readJsonlColumns, readJsonlRecords } from './jsonl.ts';
import { readParquetColumns, readParquetRecords } from './parquet.ts';
import type { ChunkOptions } from './text-chunks.ts';

export type DatasetFormat = 'csv' | 'jsonl' | 'parquet';

export interface DatasetSpec {
  path: string;
  format?: DatasetFormat;
  skip?: number;
  limit?: number;
  shard?: { index: number; count: number };
}

const FORMATS: readonly DatasetFormat[] = ['csv', 'jsonl', 'parquet'];
const BY_EXTENSION: Record<string, DatasetFormat> = { '.csv': 'csv', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.parquet': 'parquet' };

/** The spec's `format`, else the one its extension names. */
export function datasetFormat(spec: DatasetSpec): DatasetFormat {
  if (spec.format !== undefined) {
    if (!FORMATS.includes(spec.format)) {
      throw new QuantlensError('CONFIG', `dataset.format must be one of ${FORMATS.join(', ')}, got "${spec.format}"`);
    }
    return spec.format;
  }
  const format = BY_EXTENSION[path.extname(spec.path).toLowerCase()];
  if (!format) {
    throw new QuantlensError('DATASET', `cannot tell the format of ${spec.path} from its extension (.csv, .jsonl, .ndjson, .parquet); set dataset.format`);
  }
  return format;
}

interface Selection {
  skip: number;
  limit: number;
  shardIndex: number;
  shardCount: number;
}

function checkCount(value: number | undefined, name: string): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
    throw new QuantlensError('CONFIG', `${name} must be a non-negative integer, got ${value}`);
  }
}

function selectionOf(spec: DatasetSpec): Selection {
  checkCount(spec.skip, 'dataset.skip');
  checkCount(spec.limit, 'dataset.limit');
  const shard = spec.shard ?? { index: 0, count: 1 };
  if (!Number.isInteger(shard.count) || shard.count < 1) {
    throw new QuantlensError('CONFIG', `shard count must be a positive integer, got ${shard.count}`);
  }
  if (!Number.isInteger(shard.index) || shard.index < 0 || shard.index >= shard.count) {
    throw new QuantlensError('CONFIG', `shard index must be an integer in 0..${shard.count - 1}, got ${shard.index}`);
  }
  return { skip: spec.skip ?? 0, limit: spec.limit ?? Infinity, shardIndex: shard.index, shardCount: shard.count };
}

/** Column names, reading only the CSV header / first JSONL record / Parquet footer. */
export async function datasetColumns(spec: DatasetSpec, options: ChunkOptions = {}): Promise<string[]> {
  switch (datasetFormat(spec)) {
    case 'csv':
      return readCsvHeader(spec.path, options);
    case 'jsonl':
      return readJsonlColumns(spec.path, options);
    case 'parquet':
      return readParquetColumns(spec.path);
  }
}

/**
 * Keeps rows skip … skip+limit-1 of the file, then within that selection the rows whose ordinal
 * ≡ shard.index (mod shard.count): round-robin, so shards are balanced and their union is exactly
 * the unsharded selection. Stops reading (and closes the file) once the limit is passed.
 */
async function* selectRecords(records: AsyncIterable<DatasetRecord>, sel: Selection): AsyncGenerator<DatasetRecord> {
  if (sel.limit === 0) return;
  for await (const record of records) {
    const ordinal = record.example_id - sel.skip;
    if (ordinal < 0) continue;
    if (ordinal >= sel.limit) return;
    if (ordinal % sel.shardCount === sel.shardIndex) yield record;
    if (ordinal === sel.limit - 1) return;
  }
}

/**
 * Streams the selected records. Nothing is read until iteration starts; each next() reads at most
 * one more chunk (CSV/JSONL) or row group (Parquet). Each iteration re-opens the file.
 * The spec (format, skip, limit, shard) is validated now; a missing file fails on the first next().
 */
export function openDataset(spec: DatasetSpec, options: ChunkOptions = {}): AsyncIterable<DatasetRecord> {
  const format = datasetFormat(spec);
  const sel = selectionOf(spec);
  const records = (): AsyncIterable<DatasetRecord> => {
    switch (format) {
      case 'csv':
        return readCsvRecords(spec.path, options);
      case 'jsonl':
        return readJsonlRecords(spec.path, options);
      case 'parquet':
        return readParquetRecords(spec.path, { start: sel.skip, end: sel.skip + sel.limit });
    }
  };
  return { [Symbol.asyncIterator]: () => selectRecords(records(), sel) };
}
