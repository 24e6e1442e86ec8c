/**
 * A model's identity for resume checks, attribution-graph caches and Parquet metadata: sha256
 * over the .onnx bytes plus, for each external data file, its name, size and content. External
 * data can be many GB, so a file above FULL_HASH_LIMIT is fingerprinted by SAMPLES evenly spaced
 * pieces (first and last included) rather than read whole: a re-export with the same layout and
 * other weights changes the hash, at a cost of about 4 MiB read per file. The .onnx itself is
 * streamed, never loaded whole.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import type { ModelFolder } from './folder.ts';

/** Files up to this size are hashed whole. */
export const FULL_HASH_LIMIT = 64 << 20;
const SAMPLES = 64;
const PIECE = 64 << 10;

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
