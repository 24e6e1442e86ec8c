/**
 * The streaming Parquet writer behind every output table (neurons, predictions, summaries, dumps).
 *
 * Writer choice: hyparquet-writer, not parquetjs-lite (the design card's pick). bench/parquet-writers.ts
 * measures both on neurons/predictions-like tables; parquetjs-lite is row-at-a-time (a JS object
 * per row, shredded per value) and is an order of magnitude slower, which would cost more than the
 * 5% of pipeline time the issue allows. hyparquet-writer's ParquetWriter writes one row group per
 * call and hands each finished group to our file writer, so we buffer at most one row group.
 * That buffer grows with the rows it holds and is reused from group to group: a checkpoint part
 * of a few thousand rows must not allocate (and leave as old-generation garbage) a whole row
 * group's worth of columns, twice, each time it is opened and closed.
 * The library stays behind this one interface (openParquetSink / writeParquetTable).
 *
 * Files are written under a temporary name (core/held-file.ts) and renamed on close(); abort()
 * removes the temporary file, so a final name never holds a half-written table.
 */
import type { FileHandle } from 'node:fs/promises';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import type { SchemaElement } from 'hyparquet';
import { HeldFile } from '../core/held-file.ts';
import { writeError } from '../core/atomic-write.ts';
import { QuantlensError } from '../core/errors.ts';

/** `list<float>` exists for activation dumps (values per row); tables use the others. */
export type ColumnType = 'int32' | 'int64' | 'double' | 'utf8' | 'bool' | 'list<int32>' | 'list<float>' | 'list<double>';

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

const INITIAL_BYTES = 64 << 10;

/** hyparquet-writer's ByteWriter that appends each finished row group to an open file. */
class FileByteWriter extends ByteWriter {
  constructor(
    private readonly file: FileHandle,
    /** Named in a write error (ENOSPC): Node's own message names no file. */
    private readonly finalPath: string,
  ) {
    // Small to start (a checkpoint part is tens of kB); ByteWriter doubles it when a group needs more.
    super(INITIAL_BYTES);
  }
  async flush(): Promise<void> {
    if (this.index === 0) return;
    await this.file.write(new Uint8Array(this.buffer, 0, this.index)).catch((e) => {
      throw writeError(this.finalPath, e);
    });
    this.index = 0;
    // A very wide row group may have grown the buffer; give the memory back between groups.
    if (this.buffer.byteLength > 64 << 20) {
      this.buffer = new ArrayBuffer(INITIAL_BYTES);
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
      case 'list<double>':
        // Standard 3-level LIST so DuckDB reads LIST(INTEGER)/LIST(FLOAT) and hyparquet plain arrays.
        schema.push(
          { name: c.name, repetition_type, converted_type: 'LIST', num_children: 1 },
          { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
          { name: 'element', type: c.type === 'list<int32>' ? 'INT32' : c.type === 'list<double>' ? 'DOUBLE' : 'FLOAT', repetition_type: 'REQUIRED' },
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

/** `b` moved into a buffer of `rows` rows (its first `filled` rows kept). */
function grownBuffer(spec: ColumnSpec, b: Buffer, filled: number, rows: number): Buffer {
  const next = newBuffer(spec, rows);
  if (Array.isArray(b)) for (let i = 0; i < filled; i++) (next as unknown[])[i] = b[i];
  else (next as Int32Array).set((b as Int32Array).subarray(0, filled));
  return next;
}

/** The first `filled` rows of a buffer, without copying (a typed view, or the array cut to length: it is not used after). */
function filledPart(b: Buffer, filled: number): Buffer {
  if (b.length === filled) return b;
  if (Array.isArray(b)) {
    b.length = filled;
    return b;
  }
  return (b as Int32Array).subarray(0, filled);
}

/** First capacity of a sink's buffers; they double from there up to one row group. */
const INITIAL_BUFFER_ROWS = 1024;

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 20 ? v.slice(0, 20) + '…' : v);
  if (typeof v === 'bigint') return `${v}n`;
  return String(v);
}

/** Copy src[from, from+count) into `dst` at `at`, validating every value against `spec`. */
function copyColumn(spec: ColumnSpec, dst: Buffer, at: number, src: ArrayLike<unknown>, from: number, count: number, fail: (msg: string) => never, rowBase: number): void {
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
  const where = (i: number) => `column "${spec.name}" row ${rowBase + i - from}`;
  for (let i = from; i < from + count; i++) {
    const v = src[i];
    const k = at + i - from;
    if (v === null || v === undefined) {
      if (!spec.nullable) fail(`${where(i)}: null in a non-nullable ${spec.type} column`);
      d[k] = null;
      continue;
    }
    d[k] = checkedValue(spec, v, () => where(i), fail);
  }
}

/** One non-null value converted to what the writer stores (bigint for int64, plain arrays for lists). */
function checkedValue(spec: ColumnSpec, v: unknown, where: () => string, fail: (msg: string) => never): unknown {
  switch (spec.type) {
    case 'int32':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) fail(`${where()}: expected int32, got ${describe(v)}`);
      return v;
    case 'int64': {
      let big: bigint;
      if (typeof v === 'bigint') big = v;
      else if (typeof v === 'number' && Number.isSafeInteger(v)) big = BigInt(v);
      else fail(`${where()}: expected int64 (safe integer or bigint), got ${describe(v)}`);
      if (big < INT64_MIN || big > INT64_MAX) fail(`${where()}: int64 out of range: ${describe(v)}`);
      return big;
    }
    case 'double':
      if (typeof v !== 'number') fail(`${where()}: expected a number, got ${describe(v)}`);
      return v;
    case 'utf8':
      if (typeof v !== 'string') fail(`${where()}: expected a string, got ${describe(v)}`);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') fail(`${where()}: expected a boolean, got ${describe(v)}`);
      return v;
    case 'list<int32>':
    case 'list<float>':
    case 'list<double>': {
      if (typeof v !== 'object' || typeof (v as ArrayLike<unknown>).length !== 'number') fail(`${where()}: expected an array, got ${describe(v)}`);
      // The Dremel encoder needs plain arrays; copying also detaches the row from caller memory.
      const list = Array.from(v as ArrayLike<number>);
      if (spec.type === 'list<int32>') {
        for (const x of list) if (!Number.isInteger(x) || x < INT32_MIN || x > INT32_MAX) fail(`${where()}: list element is not an int32: ${describe(x)}`);
      } else {
        for (const x of list) if (typeof x !== 'number') fail(`${where()}: list element is not a number: ${describe(x)}`);
      }
      return list;
    }
  }
}

function checkColumns(finalPath: string, columns: ColumnSpec[], rowGroupRows: number): Set<string> {
  if (!Number.isInteger(rowGroupRows) || rowGroupRows < 1) {
    throw new QuantlensError('IO', `rowGroupRows must be a positive integer, got ${rowGroupRows}`, finalPath);
  }
  const names = new Set<string>();
  for (const c of columns) {
    if (names.has(c.name)) throw new QuantlensError('IO', `duplicate column "${c.name}"`, finalPath);
    names.add(c.name);
  }
  return names;
}

/** Column-wise rows buffered up to one row group, written through hyparquet-writer to a HeldFile. */
class ParquetFileSink implements ParquetSink {
  private buffers: Buffer[];
  /** Rows the buffers hold room for (≤ rowGroupRows). */
  private capacity: number;
  private filled = 0;
  private written = 0;
  private out: FileByteWriter;
  private pq: ParquetWriter;

  constructor(private f: HeldFile, private columns: ColumnSpec[], private names: Set<string>, private rowGroupRows: number, schema: SchemaElement[], metadata: Record<string, string>) {
    this.out = new FileByteWriter(f.file, f.finalPath);
    this.pq = new ParquetWriter({
      writer: this.out,
      schema,
      kvMetadata: Object.entries(metadata).map(([key, value]) => ({ key, value })),
      createdBy: 'quantlens (hyparquet-writer)',
    });
    this.capacity = Math.min(rowGroupRows, INITIAL_BUFFER_ROWS);
    this.buffers = columns.map((c) => newBuffer(c, this.capacity));
  }

  get rows(): number {
    return this.written;
  }

  /** Room for `rows` buffered rows, doubling the capacity (at most one row group). */
  private reserve(rows: number): void {
    if (rows <= this.capacity) return;
    let cap = this.capacity * 2;
    while (cap < rows) cap *= 2;
    cap = Math.min(cap, this.rowGroupRows);
    this.buffers = this.columns.map((c, j) => grownBuffer(c, this.buffers[j], this.filled, cap));
    this.capacity = cap;
  }

  /**
   * Encode the buffered rows as one row group. A full group leaves the buffers to be refilled
   * (the writer copies what it encodes); a partial one is the last (close), so they may be cut.
   */
  private async writeGroup(): Promise<void> {
    if (this.filled === 0) return;
    const columnData = this.columns.map((c, j) => ({ name: c.name, data: filledPart(this.buffers[j], this.filled) as never }));
    await this.pq.write({ columnData, rowGroupSize: this.filled });
    await this.out.flush();
    this.filled = 0;
  }

  /** Rows in `data`, after checking that it has exactly the table's columns, all of one length. */
  private rowCount(data: Record<string, ArrayLike<unknown>>): number {
    const fail = (msg: string) => this.f.fail(msg);
    for (const name of Object.keys(data)) if (!this.names.has(name)) fail(`unknown column "${name}" (table has ${[...this.names].join(', ')})`);
    let n = -1;
    for (const c of this.columns) {
      const col = data[c.name];
      if (col === undefined) fail(`append() is missing column "${c.name}"`);
      if (n === -1) n = col.length;
      else if (col.length !== n) fail(`column "${c.name}" has ${col.length} rows, expected ${n} like "${this.columns[0].name}"`);
    }
    return n;
  }

  async append(data: Record<string, ArrayLike<unknown>>): Promise<void> {
    this.f.ensureOpen('append');
    const n = this.rowCount(data);
    if (n <= 0) return;
    const fail = (msg: string) => this.f.fail(msg);
    try {
      for (let off = 0; off < n; ) {
        const take = Math.min(n - off, this.rowGroupRows - this.filled);
        this.reserve(this.filled + take);
        for (let j = 0; j < this.columns.length; j++) copyColumn(this.columns[j], this.buffers[j], this.filled, data[this.columns[j].name], off, take, fail, this.written);
        this.filled += take;
        this.written += take;
        off += take;
        if (this.filled === this.rowGroupRows) await this.writeGroup();
      }
    } catch (e) {
      // Keep the file consistent: a half-appended batch cannot be written, so the sink is dead.
      this.f.state = 'failed';
      throw this.f.wrap(e);
    }
  }

  close(): Promise<void> {
    return this.f.close(async () => {
      await this.writeGroup();
      this.buffers = [];
      this.pq.finish();
      await this.out.flush();
    });
  }

  abort(): Promise<void> {
    return this.f.abort();
  }
}

export async function openParquetSink(
  finalPath: string,
  columns: ColumnSpec[],
  metadata: Record<string, string>,
  opts: { rowGroupRows?: number } = {},
): Promise<ParquetSink> {
  const rowGroupRows = opts.rowGroupRows ?? DEFAULT_ROW_GROUP_ROWS;
  const names = checkColumns(finalPath, columns, rowGroupRows);
  const schema = schemaFor(columns); // unknown column types are refused before any file exists
  return new ParquetFileSink(await HeldFile.open(finalPath), columns, names, rowGroupRows, schema, metadata);
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
