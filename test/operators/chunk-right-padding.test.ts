/**
 * Right-padded batches (models whose attention needs real tokens first): the chunk keeps each
 * row's first lengths[b] positions, for float32 (compacted in place) and float16 input, checked
 * element by element against the original buffer.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { activationChunk } from '../../operators/chunk.ts';
import { floatToHalf } from '../../onnx/dtypes.ts';
import type { Batch, TokenizedExample } from '../../core/types.ts';
import { SeededRandom } from '../../core/random.ts';

function batchOf(lengths: number[], T: number): Batch {
  const examples: TokenizedExample[] = lengths.map((n, b) => ({ example_id: 10 + b, ids: Int32Array.from({ length: n }, (_, j) => 100 * b + j), gold: 'x', truncated: false, fields: {} }));
  const realTokens = lengths.reduce((a, v) => a + v, 0);
  return { index: 0, examples, seqLen: T, lengths: Int32Array.from(lengths), realTokens, paddedTokens: lengths.length * T - realTokens };
}

test('right padding: real rows are the first lengths[b] positions of each row (float32 and float16)', () => {
  const lengths = [5, 2, 0, 7, 3];
  const B = lengths.length, T = 7, D = 3;
  const rnd = new SeededRandom(9);
  const orig = Float32Array.from({ length: B * T * D }, () => rnd.normal());
  const batch = batchOf(lengths, T);
  const expected: number[] = [];
  const where: [number, number, number][] = [];
  for (let b = 0; b < B; b++) for (let p = 0; p < lengths[b]; p++) {
    where.push([10 + b, p, 100 * b + p]);
    for (let j = 0; j < D; j++) expected.push(orig[(b * T + p) * D + j]);
  }
  const c32 = activationChunk({ data: orig.slice(), dims: [B, T, D], batch, precision: 'fp32', layer: 1, tensor: 't', padSide: 'right' });
  assert.equal(Array.from(c32.values), expected);
  assert.equal(where, Array.from({ length: c32.rows }, (_, r) => [c32.exampleId[r], c32.position[r], c32.tokenId[r]]));
  const half = floatToHalf(orig);
  const c16 = activationChunk({ data: half, dims: [B, T, D], batch, precision: 'fp16', layer: 1, tensor: 't', padSide: 'right' });
  assert.is(c16.rows, c32.rows);
  c16.values.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) <= 1e-3 * Math.max(1, Math.abs(expected[i])), `fp16 ${i}`));
});

test.run();
