/**
 * Parquet datasets via hyparquet, one row group at a time over an AsyncBuffer that reads byte
 * ranges from a file descriptor, so only the footer and the current row group are in memory.
 */
import { parquetMetadataAsync, parquetReadObjects, parquetSchema, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { promises as fs } from 'node:fs';
import type { DatasetRecord } from '../../core/types.ts';
import { QuantlensError } from '../../core/errors.ts';
import { fieldText, fieldsFromEntries } from './field-text.ts';
import { openDatasetFile } from './text-chunks.ts';

/** Rows [start, end) of the file; readers may skip row groups outside it. */
export interface RowRange {
  start: number;
  end: number;
}

/** An AsyncBuffer whose slices are positioned reads on an open file. */
export function fileHandleAsyncBuffer(handle: fs.FileHandle, byteLength: number): AsyncBuffer {
  return {
    byteLength,
    async slice(start: number, end: number = byteLength): Promise<ArrayBuffer> {
      const length = Math.max(0, Math.min(end, byteLength) - start);
      const bytes = new Uint8Array(length);
      for (let done = 0; done < length; ) {
        const { bytesRead } = await handle.read(bytes, done, length - done, start + done);
        if (bytesRead === 0) throw new QuantlensError('IO', `unexpected end of file at byte ${start + done}`);
        done += bytesRead;
      }
      return bytes.buffer;
    },
  };
}

interface OpenParquet {
  handle: fs.FileHandle;
  file: AsyncBuffer;
  metadata: FileMetaData;
  columns: string[];
}

async function openParquet(path: string): Promise<OpenParquet> {
  const handle = await openDatasetFile(path);
  try {
    const { size } = await handle.stat();
    const file = fileHandleAsyncBuffer(handle, size);
    let metadata: FileMetaData;
    try {
      metadata = await parquetMetadataAsync(file);
    } catch (e) {
      throw new QuantlensError('DATASET', `${path}: not a readable Parquet file (${(e as Error).message})`, undefined, { cause: e });
    }
    const columns = parquetSchema(metadata).children.map((child) => child.element.name);
    return { handle, file, metadata, columns };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** Top-level column names from the footer schema. */
export async function readParquetColumns(path: string): Promise<string[]> {
  const { handle, columns } = await openParquet(path);
  await handle.close();
  return columns;
}

/** Records in file order; example_id is the row index. Only row groups overlapping `range` are read. */
export async function* readParquetRecords(path: string, range: RowRange = { start: 0, end: Infinity }): AsyncGenerator<DatasetRecord> {
  const { handle, file, metadata, columns } = await openParquet(path);
  try {
    let groupStart = 0;
    for (const group of metadata.row_groups) {
      const groupEnd = groupStart + Number(group.num_rows);
      const rowStart = Math.max(groupStart, range.start);
      const rowEnd = Math.min(groupEnd, range.end);
      if (rowStart < rowEnd) {
        let rows: Record<string, unknown>[];
        try {
          rows = await parquetReadObjects({ file, metadata, rowStart, rowEnd });
        } catch (e) {
          throw new QuantlensError('DATASET', `${path}: cannot read rows ${rowStart}-${rowEnd - 1} (${(e as Error).message})`, undefined, { cause: e });
        }
        for (let k = 0; k < rows.length; k++) {
          const row = rows[k];
          yield { example_id: rowStart + k, fields: fieldsFromEntries(columns.map((name) => [name, fieldText(row[name])] as const)) };
        }
      }
      groupStart = groupEnd;
      if (groupStart >= range.end) break;
    }
  } finally {
    await handle.close();
  }
}
