/**
 * The streaming Parquet writer behind every output table (neurons, predictions, summaries, dumps).
 *
 * Writer choice: hyparquet-writer, not parquetjs-lite (the design card's pick). bench/parquet-writers.ts
 * measures both on neurons/predictions-like tables; parquetjs-lite is row-at-a-time (a JS object
 * per row, shredded per value) and is an order of magnitude slower, which would cost more than the
 * 5% of pipeline time the issue allows. hyparquet-writer's ParquetWriter writes one row group per
 * call and hands each finished group to our file writer, so we buffer at most one row group.
 * The library stays behind this one interface (openParquetSink / writeParquetTable).
 *
 * Files are written under a temporary name registered with core/atomic-write.ts and renamed on
 * close(); abort() removes the temporary file, so a final name never holds a half-written table.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import type { SchemaElement } from 'hyparquet';
import { writeAtomically, writeError } from '../core/atomic-write.ts';
import { QuantlensError } from '../core/errors.ts';

/** `list<float>` exists for activation dumps (values per row); tables use the others. */
export type ColumnType = 'int32' | 'int64' | 'double' | 'utf8' | 'bool' | 'list<int32>' | 'list<float>';

export interface ColumnSpec {
  name: string;
  type: ColumnType;
  nullable?: boolean;
}

export interface ParquetSink {
  /** Append rows given column-wise: each column an array/typed array of equal length (int64 as number or bigint; null allowed where nullable). */
  append(columns: Record<string, ArrayLike<unknown>>): Promise<void>;
  /** Flush the last row group, write the footer, rename temp → final name. */
  close(): Promise<void>;
  /** Remove the temporary file; the final name never appears. */
  abort(): Promise<void>;
  readonly rows: number;
}

export const DEFAULT_ROW_GROUP_ROWS = 65_536;

// ---------------------------------------------------------------------------------------------
// Temporary file held open across many async writes, registered with atomic-write's pending set
// (so the SIGINT handler removes it) by running writeAtomically around the sink's lifetime.

export interface HeldTemporary {
  readonly tmpPath: string;
  /** Rename to the final name. */
  commit(): Promise<void>;
  /** Remove the temporary file. */
  discard(): Promise<void>;
}

const DISCARDED = Symbol('discarded');

export async function holdTemporaryFile(finalPath: string): Promise<HeldTemporary> {
  let settle!: (ok: boolean) => void;
  let tmpPath = '';
  let opened!: () => void;
  const ready = new Promise<void>((resolve) => (opened = resolve));
  const done = writeAtomically(finalPath, (tmp) => {
    tmpPath = tmp;
    return new Promise<void>((resolve, reject) => {
      settle = (ok) => (ok ? resolve() : reject(DISCARDED));
      opened();
    });
  });
  // Surfaces mkdir failures before the callback runs; the settled branch is observed below.
  done.catch(() => {});
  try {
    await Promise.race([ready, done]);
  } catch (e) {
    throw new QuantlensError('IO', `cannot create the output folder: ${(e as Error).message}`, finalPath, { cause: e });
  }
  return {
    tmpPath,
    async commit() {
      settle(true);
      try {
        await done;
      } catch (e) {
        throw new QuantlensError('IO', `cannot rename temporary file into place: ${(e as Error).message}`, finalPath, { cause: e });
      }
    },
    async discard() {
      settle(false);
      await done.catch((e) => {
        if (e !== DISCARDED) throw e;
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------

/** hyparquet-writer's ByteWriter that appends each finished row group to an open file. */
class FileByteWriter extends ByteWriter {
  constructor(
    private readonly file: FileHandle,
    /** Named in a write error (ENOSPC): Node's own message names no file. */
    private readonly finalPath: string,
  ) {
    super(1 << 20);
  }
  async flush(): Promise<void> {
    if (this.index === 0) return;
    await this.file.write(new Uint8Array(this.buffer, 0, this.index)).catch((e) => {
      throw writeError(this.finalPath, e);
    });
    this.index = 0;
    // A very wide row group may have grown the buffer; give the memory back between groups.
    if (this.buffer.byteLength > 64 << 20) {
      this.buffer = new ArrayBuffer(1 << 20);
      this.view = new DataView(this.buffer);
    }
  }
  override finish(): void {
    // Footer bytes are flushed by the sink (async); nothing to do synchronously.
  }
}

function schemaFor(columns: ColumnSpec[]): SchemaElement[] {
  const schema: SchemaElement[] = [{ name: 'root', num_children: columns.length }];
  for (const c of columns) {
    const repetition_type = c.nullable ? 'OPTIONAL' : 'REQUIRED';
    switch (c.type) {
      case 'int32':
        schema.push({ name: c.name, type: 'INT32', repetition_type });
        break;
      case 'int64':
        schema.push({ name: c.name, type: 'INT64', repetition_type });
        break;
      case 'double':
        schema.push({ name: c.name, type: 'DOUBLE', repetition_type });
        break;
      case 'utf8':
        schema.push({ name: c.name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type });
        break;
      case 'bool':
        schema.push({ name: c.name, type: 'BOOLEAN', repetition_type });
        break;
      case 'list<int32>':
      case 'list<float>':
        // Standard 3-level LIST so DuckDB reads LIST(INTEGER)/LIST(FLOAT) and hyparquet plain arrays.
        schema.push(
          { name: c.name, repetition_type, converted_type: 'LIST', num_children: 1 },
          { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
          { name: 'element', type: c.type === 'list<int32>' ? 'INT32' : 'FLOAT', repetition_type: 'REQUIRED' },
        );
        break;
      default:
        throw new QuantlensError('UNSUPPORTED', `unknown column type "${(c as ColumnSpec).type}" for column "${c.name}"`);
    }
  }
  return schema;
}

type Buffer = Int32Array | Float64Array | BigInt64Array | unknown[];

/** Row-group buffer for one column; typed arrays where no nulls are allowed (fast, compact). */
function newBuffer(spec: ColumnSpec, rows: number): Buffer {
  if (!spec.nullable) {
    if (spec.type === 'int32') return new Int32Array(rows);
    if (spec.type === 'double') return new Float64Array(rows);
    if (spec.type === 'int64') return new BigInt64Array(rows);
  }
  return new Array(rows);
}

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 20 ? v.slice(0, 20) + '…' : v);
  if (typeof v === 'bigint') return `${v}n`;
  return String(v);
}

export async function openParquetSink(
  finalPath: string,
  columns: ColumnSpec[],
  metadata: Record<string, string>,
  opts: { rowGroupRows?: number } = {},
): Promise<ParquetSink> {
  const rowGroupRows = opts.rowGroupRows ?? DEFAULT_ROW_GROUP_ROWS;
  if (!Number.isInteger(rowGroupRows) || rowGroupRows < 1) {
    throw new QuantlensError('IO', `rowGroupRows must be a positive integer, got ${rowGroupRows}`, finalPath);
  }
  const names = new Set<string>();
  for (const c of columns) {
    if (names.has(c.name)) throw new QuantlensError('IO', `duplicate column "${c.name}"`, finalPath);
    names.add(c.name);
  }
  const schema = schemaFor(columns);

  const held = await holdTemporaryFile(finalPath);
  let file: FileHandle;
  try {
    file = await open(held.tmpPath, 'w');
  } catch (e) {
    await held.discard();
    throw new QuantlensError('IO', `cannot create temporary file: ${(e as Error).message}`, finalPath, { cause: e });
  }
  const out = new FileByteWriter(file, finalPath);
  const pq = new ParquetWriter({
    writer: out,
    schema,
    kvMetadata: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    createdBy: 'quantlens (hyparquet-writer)',
  });

  let buffers = columns.map((c) => newBuffer(c, rowGroupRows));
  let filled = 0;
  let rows = 0;
  let state: 'open' | 'closed' | 'aborted' | 'failed' = 'open';

  function fail(msg: string): never {
    throw new QuantlensError('IO', msg, finalPath);
  }

  async function writeGroup(): Promise<void> {
    if (filled === 0) return;
    const columnData = columns.map((c, j) => {
      const b = buffers[j];
      return { name: c.name, data: (filled === rowGroupRows ? b : b.slice(0, filled)) as never };
    });
    await pq.write({ columnData, rowGroupSize: filled });
    await out.flush();
    buffers = columns.map((c) => newBuffer(c, rowGroupRows));
    filled = 0;
  }

  /** Copy src[from, from+count) into the column buffer at `filled`, validating every value. */
  function copyInto(j: number, src: ArrayLike<unknown>, from: number, count: number): void {
    const spec = columns[j];
    const dst = buffers[j];
    const at = filled;
    // Fast paths: typed input into typed buffer of the same element kind.
    if (dst instanceof Int32Array && src instanceof Int32Array) {
      dst.set(src.subarray(from, from + count), at);
      return;
    }
    if (dst instanceof Float64Array && (src instanceof Float64Array || src instanceof Float32Array)) {
      dst.set(src.subarray(from, from + count), at);
      return;
    }
    if (dst instanceof BigInt64Array && src instanceof BigInt64Array) {
      dst.set(src.subarray(from, from + count), at);
      return;
    }
    const d = dst as unknown[] & ArrayLike<unknown>;
    const where = (i: number) => `column "${spec.name}" row ${rows + i - from}`;
    for (let i = from; i < from + count; i++) {
      const v = src[i];
      const k = at + i - from;
      if (v === null || v === undefined) {
        if (!spec.nullable) fail(`${where(i)}: null in a non-nullable ${spec.type} column`);
        d[k] = null;
        continue;
      }
      switch (spec.type) {
        case 'int32':
          if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) fail(`${where(i)}: expected int32, got ${describe(v)}`);
          d[k] = v;
          break;
        case 'int64': {
          let big: bigint;
          if (typeof v === 'bigint') big = v;
          else if (typeof v === 'number' && Number.isSafeInteger(v)) big = BigInt(v);
          else fail(`${where(i)}: expected int64 (safe integer or bigint), got ${describe(v)}`);
          if (big < INT64_MIN || big > INT64_MAX) fail(`${where(i)}: int64 out of range: ${describe(v)}`);
          d[k] = big;
          break;
        }
        case 'double':
          if (typeof v !== 'number') fail(`${where(i)}: expected a number, got ${describe(v)}`);
          d[k] = v;
          break;
        case 'utf8':
          if (typeof v !== 'string') fail(`${where(i)}: expected a string, got ${describe(v)}`);
          d[k] = v;
          break;
        case 'bool':
          if (typeof v !== 'boolean') fail(`${where(i)}: expected a boolean, got ${describe(v)}`);
          d[k] = v;
          break;
        case 'list<int32>':
        case 'list<float>': {
          if (typeof v !== 'object' || typeof (v as ArrayLike<unknown>).length !== 'number') fail(`${where(i)}: expected an array, got ${describe(v)}`);
          // The Dremel encoder needs plain arrays; copying also detaches the row from caller memory.
          const list = Array.from(v as ArrayLike<number>);
          if (spec.type === 'list<int32>') {
            for (const x of list) if (!Number.isInteger(x) || x < INT32_MIN || x > INT32_MAX) fail(`${where(i)}: list element is not an int32: ${describe(x)}`);
          } else {
            for (const x of list) if (typeof x !== 'number') fail(`${where(i)}: list element is not a number: ${describe(x)}`);
          }
          d[k] = list;
          break;
        }
      }
    }
  }

  const sink: ParquetSink = {
    get rows() {
      return rows;
    },
    async append(data) {
      if (state !== 'open') fail(`append() after ${state === 'failed' ? 'a failed write' : state === 'closed' ? 'close()' : 'abort()'}`);
      for (const name of Object.keys(data)) if (!names.has(name)) fail(`unknown column "${name}" (table has ${[...names].join(', ')})`);
      let n = -1;
      for (const c of columns) {
        const col = data[c.name];
        if (col === undefined) fail(`append() is missing column "${c.name}"`);
        if (n === -1) n = col.length;
        else if (col.length !== n) fail(`column "${c.name}" has ${col.length} rows, expected ${n} like "${columns[0].name}"`);
      }
      if (n <= 0) return;
      try {
        for (let off = 0; off < n; ) {
          const take = Math.min(n - off, rowGroupRows - filled);
          for (let j = 0; j < columns.length; j++) copyInto(j, data[columns[j].name], off, take);
          filled += take;
          rows += take;
          off += take;
          if (filled === rowGroupRows) await writeGroup();
        }
      } catch (e) {
        // Keep the file consistent: a half-appended batch cannot be written, so the sink is dead.
        state = 'failed';
        throw e instanceof QuantlensError ? e : new QuantlensError('IO', `write failed: ${(e as Error).message}`, finalPath, { cause: e });
      }
    },
    async close() {
      if (state === 'closed') return;
      if (state !== 'open') fail(`close() after ${state === 'failed' ? 'a failed write (call abort())' : 'abort()'}`);
      try {
        await writeGroup();
        pq.finish();
        await out.flush();
        await file.close();
      } catch (e) {
        state = 'failed';
        await sink.abort();
        throw e instanceof QuantlensError ? e : new QuantlensError('IO', `write failed: ${(e as Error).message}`, finalPath, { cause: e });
      }
      state = 'closed';
      await held.commit();
    },
    async abort() {
      if (state === 'closed' || state === 'aborted') return;
      state = 'aborted';
      await file.close().catch(() => {});
      await held.discard();
    },
  };
  return sink;
}

/** Write a whole table in one call (small tables: summaries, reports). */
export async function writeParquetTable(
  finalPath: string,
  columns: ColumnSpec[],
  metadata: Record<string, string>,
  data: Record<string, ArrayLike<unknown>>,
  opts: { rowGroupRows?: number } = {},
): Promise<void> {
  const sink = await openParquetSink(finalPath, columns, metadata, opts);
  try {
    await sink.append(data);
    await sink.close();
  } catch (e) {
    await sink.abort();
    throw e;
  }
}
