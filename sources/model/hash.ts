/**
 * A model's identity for resume checks, attribution-graph caches and Parquet metadata: sha256
 * over the .onnx bytes plus, for each external data file, its name, size and content. External
 * data can be many GB (and some exporters write a file per tensor), so a file above
 * FULL_HASH_LIMIT is fingerprinted by SAMPLES evenly spaced pieces (first and last included)
 * rather than read whole: a re-export with the same layout and other weights changes the hash,
 * at a cost of at most 4 MiB read per file. The .onnx itself is streamed, never loaded whole.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fsp, statSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import type { ModelFolder } from './folder.ts';

const SAMPLES = 64;
const PIECE = 64 << 10;
/** Files up to this size are hashed whole: the bytes the samples of a larger one read. */
export const FULL_HASH_LIMIT = SAMPLES * PIECE;

export async function modelHash(folder: Pick<ModelFolder, 'onnxPath' | 'externalData'>): Promise<string> {
  const hash = createHash('sha256');
  try {
    await streamInto(hash, folder.onnxPath);
    for (const file of [...folder.externalData].sort()) {
      const { size } = await fsp.stat(file);
      hash.update(`\0external:${path.basename(file)}:${size}\0`);
      if (size <= FULL_HASH_LIMIT) await streamInto(hash, file);
      else await sampleInto(hash, file, size);
    }
  } catch (e) {
    throw new QuantlensError('IO', `cannot read model for hashing: ${(e as Error).message}`, folder.onnxPath, { cause: e });
  }
  return hash.digest('hex');
}

const hashes = new Map<string, Promise<string>>();

/**
 * modelHash once per process for the same files: the run's plan, each quantized precision's
 * cache key and each layer's attribution graph ask for the same model. Keyed by every file's
 * path, size and mtime (coarse: a file rewritten within the same clock tick in the same process
 * is not seen, which a run does not do to its own model).
 */
export function modelHashOnce(folder: Pick<ModelFolder, 'onnxPath' | 'externalData'>): Promise<string> {
  let id: string;
  try {
    id = JSON.stringify([folder.onnxPath, ...[...folder.externalData].sort()].map((f) => {
      const st = statSync(f);
      return [path.resolve(f), st.size, st.mtimeMs];
    }));
  } catch {
    return modelHash(folder); // it names the unreadable file
  }
  let h = hashes.get(id);
  if (!h) {
    h = modelHash(folder);
    hashes.set(id, h);
    h.catch(() => hashes.delete(id));
  }
  return h;
}

async function streamInto(hash: Hash, file: string): Promise<void> {
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
}

/** SAMPLES pieces of PIECE bytes at offsets k·(size − PIECE)/(SAMPLES − 1), k = 0 … SAMPLES − 1. */
async function sampleInto(hash: Hash, file: string, size: number): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(PIECE);
    for (let k = 0; k < SAMPLES; k++) {
      const offset = Math.floor((k * (size - PIECE)) / (SAMPLES - 1));
      const { bytesRead } = await fh.read(buf, 0, PIECE, offset);
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}
