/**
 * A model's identity for resume checks and Parquet metadata: sha256 over the .onnx bytes plus
 * (name, size) of each external data file. External data can be many GB, so it is identified by
 * name and size rather than hashed; the .onnx itself is streamed, never loaded whole.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import type { ModelFolder } from './folder.ts';

export async function modelHash(folder: Pick<ModelFolder, 'onnxPath' | 'externalData'>): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(folder.onnxPath, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
    for (const file of [...folder.externalData].sort()) {
      const { size } = await fsp.stat(file);
      hash.update(`\0external:${path.basename(file)}:${size}`);
    }
  } catch (e) {
    throw new QuantlensError('IO', `cannot read model for hashing: ${(e as Error).message}`, folder.onnxPath, { cause: e });
  }
  return hash.digest('hex');
}
