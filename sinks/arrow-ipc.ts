/**
 * Streaming Arrow IPC (stream format) file writer: schema message, one message per RecordBatch,
 * end-of-stream marker. Read back with apache-arrow's tableFromIPC, pyarrow.ipc.open_stream,
 * or DuckDB's arrow extension.
 *
 * Why a subclass: apache-arrow's RecordBatchStreamWriter queues its output bytes (views into the
 * batch buffers, no copy) and drains them asynchronously. Activation chunks are views into ORT
 * output buffers, so we capture the bytes synchronously in _write and await the file write before
 * write() resolves: nothing of the caller's memory is referenced after that, and nothing is copied.
 *
 * Written under a temporary name (registered for SIGINT cleanup) and renamed on close().
 */
import * as arrow from 'apache-arrow';
import { QuantlensError } from '../core/errors.ts';
import { HeldFile } from '../core/held-file.ts';

export interface ArrowIpcSink {
  /** Append one batch; every batch must have the schema of the first. Resolves once its bytes are on disk. */
  write(batch: arrow.RecordBatch): Promise<void>;
  /** Write the end-of-stream marker and rename temp → final name. `schema` is written if no batch was. */
  close(schema?: arrow.Schema): Promise<void>;
  abort(): Promise<void>;
  readonly rows: number;
}

/** RecordBatchStreamWriter whose output bytes are collected synchronously instead of queued. */
class CollectingStreamWriter extends arrow.RecordBatchStreamWriter {
  collected: Uint8Array[] = [];
  protected override _write(chunk: ArrayBufferView): this {
    // _started is false before the schema message, matching the base class (nothing to write yet).
    if ((this as unknown as { _started: boolean })._started && chunk.byteLength > 0) {
      this.collected.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      (this as unknown as { _position: number })._position += chunk.byteLength;
    }
    return this;
  }
  take(): Uint8Array[] {
    const out = this.collected;
    this.collected = [];
    return out;
  }
}

export async function openArrowIpcSink(finalPath: string): Promise<ArrowIpcSink> {
  const f = await HeldFile.open(finalPath);
  const writer = new CollectingStreamWriter({ autoDestroy: false });
  let schema: arrow.Schema | null = null;
  let rows = 0;

  async function drain(): Promise<void> {
    const parts = writer.take();
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
        throw new QuantlensError('IO', `write failed: ${(e as Error).message}`, finalPath, { cause: e });
      }
      rows += batch.numRows;
    },
    close(emptySchema) {
      return f.close(async () => {
        if (schema === null) {
          if (!emptySchema) f.fail('close() of a stream with no batches needs the schema to write');
          writer.reset(undefined, emptySchema); // writes the schema message
        }
        writer.finish(); // end-of-stream marker
        await drain();
      });
    },
    abort: () => f.abort(),
  };
}
