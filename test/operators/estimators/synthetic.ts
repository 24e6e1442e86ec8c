/** Seeded synthetic data for the estimator tests (not a test file itself). */
import type { ActivationChunk, PredictionBatch } from '../../../core/types.ts';
import { mulberry32 } from '../../../core/random.ts';

export const rng = mulberry32;


export function gaussian(r: () => number): number {
  const u = Math.max(r(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

export function chunk(
  precision: string,
  layer: number,
  tensor: string,
  values: Float32Array,
  width: number,
  batchIndex = 0,
): ActivationChunk {
  const rows = values.length / width;
  return {
    batchIndex,
    precision,
    layer,
    tensor,
    width,
    rows,
    values,
    exampleId: Int32Array.from({ length: rows }, (_, i) => i),
    position: new Int32Array(rows),
    tokenId: new Int32Array(rows),
  };
}

export function predictions(precision: string, exampleIds: number[], logits: Float32Array, vocab: number, gold: string[] = exampleIds.map(() => '')): PredictionBatch {
  return { batchIndex: 0, precision, exampleIds: Int32Array.from(exampleIds), gold, logits, vocab };
}

/** |a-b| <= tol * max(|a|,|b|), with equality for exact matches (incl. infinities). */
export function closeRel(a: number, b: number, tol = 1e-9): boolean {
  if (a === b) return true;
  if (Number.isNaN(a) && Number.isNaN(b)) return true;
  return Math.abs(a - b) <= tol * Math.max(Math.abs(a), Math.abs(b), 1e-300);
}

/** Splits [0, n) into k contiguous shards of nearly equal size. */
export function shardBounds(n: number, k: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < k; i++) out.push([Math.floor((i * n) / k), Math.floor(((i + 1) * n) / k)]);
  return out;
}
