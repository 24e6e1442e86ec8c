/**
 * Streaming Arrow IPC writer, in the IPC **file** format by default (`.arrow`: magic, schema
 * message, one message per RecordBatch, end-of-stream marker, footer with the batches' offsets,
 * magic), which pyarrow.ipc.open_file, polars.read_ipc and apache-arrow's
 * RecordBatchFileReader expect; or the **stream** format (the same without magic and footer,
 * conventionally `.arrows`), read by pyarrow.ipc.open_stream. tableFromIPC reads both.
 *
 * Why a subclass: apache-arrow's RecordBatchStreamWriter queues its output bytes (views into the
 * batch buffers, no copy) and drains them asynchronously. Activation chunks are views into ORT
 * output buffers, so we capture the bytes synchronously in _write and await the file write before
 * write() resolves: nothing of the caller's memory is referenced after that, and nothing is copied.
 *
 * Written under a temporary name (registered for SIGINT cleanup) and renamed on close().
 */
import * as arrow from 'apache-arrow';
import { HeldFile } from '../core/held-file.ts';

export interface ArrowIpcSink {
  /** Append one batch; every batch must have the schema of the first. Resolves once its bytes are on disk. */
  write(batch: arrow.RecordBatch): Promise<void>;
  /** Write the end-of-stream marker (and footer) and rename temp → final name. `schema` is written if no batch was. */
  close(schema?: arrow.Schema): Promise<void>;
  abort(): Promise<void>;
  readonly rows: number;
}

export type ArrowIpcFormat = 'file' | 'stream';

/** The format a name implies: `.arrows` is a stream, anything else (`.arrow`) a file. */
export function ipcFormatFor(finalPath: string): ArrowIpcFormat {
  return finalPath.endsWith('.arrows') ? 'stream' : 'file';
}

interface Collecting {
  collected: Uint8Array[];
}

/** Capture a writer's bytes synchronously (instead of queueing views); `_position` feeds the file footer's offsets. */
function collect(self: Collecting & arrow.RecordBatchWriter, chunk: ArrayBufferView): void {
  // _started is false before the schema message, matching the base class (nothing to write yet).
  const w = self as unknown as { _started: boolean; _position: number };
  if (w._started && chunk.byteLength > 0) {
    self.collected.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    w._position += chunk.byteLength;
  }
}

class CollectingStreamWriter extends arrow.RecordBatchStreamWriter implements Collecting {
  collected: Uint8Array[] = [];
  protected override _write(chunk: ArrayBufferView): this {
    collect(this, chunk);
    return this;
  }
}

type SchemaWriter = (this: arrow.RecordBatchWriter, schema: arrow.Schema) => arrow.RecordBatchWriter;

class CollectingFileWriter extends arrow.RecordBatchFileWriter implements Collecting {
  collected: Uint8Array[] = [];
  protected override _write(chunk: ArrayBufferView): this {
    collect(this, chunk);
    return this;
  }
  // apache-arrow's file writer writes only the leading magic; the format puts the schema message
  // after it too (the embedded stream), which sequential readers need.
  protected override _writeSchema(schema: arrow.Schema): this {
    const w = this as unknown as { _writeMagic(): { _writePadding(n: number): unknown } };
    w._writeMagic()._writePadding(2);
    (arrow.RecordBatchWriter.prototype as unknown as { _writeSchema: SchemaWriter })._writeSchema.call(this, schema);
    return this;
  }
}

export async function openArrowIpcSink(finalPath: string, opts: { format?: ArrowIpcFormat } = {}): Promise<ArrowIpcSink> {
  const f = await HeldFile.open(finalPath);
  const writer = (opts.format ?? ipcFormatFor(finalPath)) === 'file' ? new CollectingFileWriter({ autoDestroy: false }) : new CollectingStreamWriter({ autoDestroy: false });
  let schema: arrow.Schema | null = null;
  let rows = 0;

  async function drain(): Promise<void> {
    const parts = writer.collected;
    writer.collected = [];
    if (parts.length) await f.file.writev(parts);
  }

  return {
    get rows() {
      return rows;
    },
    async write(batch) {
      f.ensureOpen('write');
      const incoming: arrow.Schema = batch.schema;
      if (schema === null) schema = incoming;
      else if (!arrow.util.compareSchemas(schema, incoming as arrow.Schema | null)) {
        // The base writer would silently start a second stream; refuse instead.
        const describe = (s: arrow.Schema) => s.fields.map(String).join(', ');
        f.fail(`batch schema ${describe(batch.schema)} differs from the stream's ${describe(schema)}`);
      }
      try {
        writer.write(batch);
        await drain();
      } catch (e) {
        f.state = 'failed';
        throw f.wrap(e);
      }
      rows += batch.numRows;
    },
    close(emptySchema) {
      return f.close(async () => {
        if (schema === null) {
          if (!emptySchema) f.fail('close() of a stream with no batches needs the schema to write');
          writer.reset(undefined, emptySchema); // writes the schema message
        }
        writer.finish(); // end-of-stream marker (and the footer of a file)
        await drain();
      });
    },
    abort: () => f.abort(),
  };
}
