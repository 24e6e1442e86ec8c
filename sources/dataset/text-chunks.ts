/**
 * Pull-based UTF-8 text reading shared by the CSV and JSONL readers: one fixed-size buffer, one
 * fs read per pull, so memory stays flat whatever the file size. A multi-byte character split
 * across two reads is decoded correctly because TextDecoder keeps its partial bytes (stream: true).
 */
import { promises as fs } from 'node:fs';
import { QuantlensError } from '../../core/errors.ts';

/** 64 KiB: large enough that syscalls don't dominate, small enough to be irrelevant for memory. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;

export interface ChunkOptions {
  /** Bytes per read. Tests use tiny values to force characters and rows across chunk borders. */
  chunkSize?: number;
}

/** Opens a dataset file read-only, turning the usual OS failures into DATASET errors. */
export async function openDatasetFile(path: string): Promise<fs.FileHandle> {
  try {
    const handle = await fs.open(path, 'r');
    const stat = await handle.stat();
    if (!stat.isFile()) {
      await handle.close();
      throw new QuantlensError('DATASET', `dataset path is not a file: ${path}`);
    }
    return handle;
  } catch (e) {
    if (e instanceof QuantlensError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new QuantlensError('DATASET', `dataset file not found: ${path}`, undefined, { cause: e });
    if (code === 'EISDIR') throw new QuantlensError('DATASET', `dataset path is not a file: ${path}`, undefined, { cause: e });
    throw new QuantlensError('IO', `cannot open dataset file ${path}: ${(e as Error).message}`, undefined, { cause: e });
  }
}

/**
 * Yields the file's text in decoded pieces, reading the next piece only when asked. A leading
 * UTF-8 BOM is dropped (TextDecoder does so by default). Invalid UTF-8 is a DATASET error.
 * Closing the iterator early (break / return()) closes the file.
 */
export async function* readTextChunks(path: string, options: ChunkOptions = {}): AsyncGenerator<string> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new QuantlensError('CONFIG', `chunkSize must be a positive integer, got ${chunkSize}`);
  const handle = await openDatasetFile(path);
  const buffer = new Uint8Array(chunkSize);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, chunkSize, offset);
      const done = bytesRead === 0;
      let text: string;
      try {
        text = done ? decoder.decode() : decoder.decode(buffer.subarray(0, bytesRead), { stream: true });
      } catch (e) {
        throw new QuantlensError('DATASET', `${path}: not valid UTF-8 (near byte ${offset})`, undefined, { cause: e });
      }
      offset += bytesRead;
      if (text.length > 0) yield text;
      if (done) return;
    }
  } finally {
    await handle.close();
  }
}
