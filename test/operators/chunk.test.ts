import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { activationChunk, chunkToRecordBatch } from '../../operators/chunk.ts';
import { halfToFloat } from '../../onnx/dtypes.ts';
import type { Batch, TokenizedExample } from '../../core/types.ts';
import { QuantlensError } from '../../core/errors.ts';
import { mulberry32 as rng } from '../../core/random.ts';


function makeBatch(r: () => number, B: number, T: number, index = 3): Batch {
  const lengths = new Int32Array(B);
  const examples: TokenizedExample[] = [];
  for (let b = 0; b < B; b++) {
    // Include the edges: empty rows and full rows.
    const len = b === 0 ? T : r() < 0.1 ? 0 : 1 + Math.floor(r() * T);
    lengths[b] = len;
    examples.push({ example_id: 100 + 7 * b, ids: Int32Array.from({ length: len }, () => Math.floor(r() * 32000)), gold: 'x', truncated: false, fields: {} });
  }
  const realTokens = lengths.reduce((a, v) => a + v, 0);
  return { index, examples, seqLen: T, lengths, realTokens, paddedTokens: B * T - realTokens };
}

/** Independent reference: IEEE half → number by the textbook formula. */
function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * Math.pow(2, -24);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * Math.pow(2, e - 15);
}

/** Brute force: row list in (b, p) order, values copied element by element from the original. */
function expectedRows(orig: ArrayLike<number>, batch: Batch, D: number, conv: (x: number) => number = (x) => x) {
  const T = batch.seqLen;
  const out: { ex: number; pos: number; tok: number; vals: number[] }[] = [];
  batch.examples.forEach((ex, b) => {
    const len = batch.lengths[b];
    for (let p = 0; p < len; p++) {
      const t = T - len + p;
      const vals: number[] = [];
      for (let d = 0; d < D; d++) vals.push(conv(orig[(b * T + t) * D + d]));
      out.push({ ex: ex.example_id, pos: p, tok: ex.ids[p], vals });
    }
  });
  return out;
}

test('float32 compaction in place matches a brute-force gather (random B, T, D, lengths)', () => {
  const r = rng(42);
  for (let trial = 0; trial < 40; trial++) {
    const B = 1 + Math.floor(r() * 6), T = 1 + Math.floor(r() * 12), D = 1 + Math.floor(r() * 20);
    const batch = makeBatch(r, B, T);
    const data = Float32Array.from({ length: B * T * D }, () => r() * 10 - 5);
    const orig = data.slice();
    const chunk = activationChunk({ data, dims: [B, T, D], batch, precision: 'q4', layer: 2, tensor: 'mlp.2' });
    const exp = expectedRows(orig, batch, D);
    assert.is(chunk.rows, exp.length);
    assert.is(chunk.rows, batch.realTokens);
    assert.is(chunk.width, D);
    assert.is(chunk.values.length, exp.length * D);
    // No new allocation: values is a view at the start of the ORT buffer.
    assert.ok(chunk.values.buffer === data.buffer);
    assert.is(chunk.values.byteOffset, data.byteOffset);
    exp.forEach((e, i) => {
      assert.is(chunk.exampleId[i], e.ex);
      assert.is(chunk.position[i], e.pos);
      assert.is(chunk.tokenId[i], e.tok);
      assert.equal(Array.from(chunk.values.subarray(i * D, (i + 1) * D)), e.vals.map((v) => Math.fround(v)));
    });
    assert.is(chunk.batchIndex, batch.index);
    assert.is(chunk.layer, 2);
    assert.is(chunk.precision, 'q4');
    assert.is(chunk.tensor, 'mlp.2');
  }
});

test('float16 conversion matches the textbook half→float formula for all 65536 patterns', () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const got = halfToFloat(all);
  for (let h = 0; h < 65536; h++) {
    const want = halfToNumber(h);
    if (Number.isNaN(want)) assert.ok(Number.isNaN(got[h]), `half ${h.toString(16)} should be NaN`);
    else assert.ok(Object.is(got[h], want), `half 0x${h.toString(16)}: got ${got[h]}, want ${want}`);
  }
});

test('float16 activations are converted once into a new compacted Float32Array', () => {
  const r = rng(7);
  for (let trial = 0; trial < 20; trial++) {
    const B = 1 + Math.floor(r() * 5), T = 1 + Math.floor(r() * 10), D = 1 + Math.floor(r() * 16);
    const batch = makeBatch(r, B, T);
    const data = Uint16Array.from({ length: B * T * D }, () => Math.floor(r() * 65536));
    const orig = data.slice();
    const chunk = activationChunk({ data, dims: [B, T, D], batch, precision: 'fp16', layer: 0, tensor: 't' });
    assert.ok(chunk.values instanceof Float32Array);
    assert.equal(Array.from(data), Array.from(orig), 'float16 input is left untouched');
    const exp = expectedRows(orig, batch, D, halfToNumber);
    assert.is(chunk.rows, exp.length);
    exp.forEach((e, i) => {
      for (let d = 0; d < D; d++) {
        const got = chunk.values[i * D + d];
        if (Number.isNaN(e.vals[d])) assert.ok(Number.isNaN(got));
        else assert.ok(Object.is(got, e.vals[d]), `row ${i} dim ${d}`);
      }
      assert.is(chunk.tokenId[i], e.tok);
      assert.is(chunk.position[i], e.pos);
    });
  }
});

test('mismatched dims and ids are refused with a QuantlensError', () => {
  const batch = makeBatch(rng(1), 2, 4);
  const data = new Float32Array(2 * 4 * 3);
  assert.throws(() => activationChunk({ data, dims: [2, 5, 3], batch, precision: 'fp32', layer: 0, tensor: 't' }), (e: unknown) => e instanceof QuantlensError && e.code === 'MODEL');
  assert.throws(() => activationChunk({ data: new Float32Array(5), dims: [2, 4, 3], batch, precision: 'fp32', layer: 0, tensor: 't' }), (e: unknown) => e instanceof QuantlensError && e.code === 'MODEL');
  const bad = { ...batch, lengths: Int32Array.from([4, 9]) };
  assert.throws(() => activationChunk({ data, dims: [2, 4, 3], batch: bad, precision: 'fp32', layer: 0, tensor: 't' }), (e: unknown) => e instanceof QuantlensError && e.code === 'STATE');
});

test('chunkToRecordBatch wraps the chunk memory without copying and reads back the same rows', () => {
  const r = rng(9);
  const B = 4, T = 9, D = 13;
  const batch = makeBatch(r, B, T);
  const data = Float32Array.from({ length: B * T * D }, () => r());
  const chunk = activationChunk({ data, dims: [B, T, D], batch, precision: 'nf4', layer: 5, tensor: 'mlp.5' });
  const rb = chunkToRecordBatch(chunk);
  assert.is(rb.numRows, chunk.rows);
  assert.equal(rb.schema.fields.map((f) => `${f.name}:${f.type}`), ['example_id:Int32', 'position:Int32', 'token_id:Int32', 'layer:Int32', 'precision:Utf8', `values:FixedSizeList[${D}]<Float32>`]);
  const child = rb.getChild('values')!.data[0].children[0];
  assert.ok(child.values.buffer === chunk.values.buffer, 'values child shares the ArrayBuffer');
  assert.is(child.values.byteOffset, chunk.values.byteOffset);
  assert.ok(rb.getChild('example_id')!.data[0].values.buffer === chunk.exampleId.buffer);
  // Writing through the chunk is visible through Arrow: proof of shared memory, not a copy.
  chunk.values[0] = 1234.5;
  assert.is((rb.getChild('values')!.get(0) as arrow_Vector).get(0), 1234.5);
  for (let i = 0; i < chunk.rows; i++) {
    const row = rb.get(i)!;
    assert.is(row.example_id, chunk.exampleId[i]);
    assert.is(row.position, chunk.position[i]);
    assert.is(row.token_id, chunk.tokenId[i]);
    assert.is(row.layer, 5);
    assert.is(row.precision, 'nf4');
    assert.equal(Array.from(row.values as Iterable<number>), Array.from(chunk.values.subarray(i * D, (i + 1) * D)));
  }
});

type arrow_Vector = { get(i: number): unknown };

test.run();
