/**
 * The bulk quantization kernels against scalar references written here from the formats'
 * definitions, element by element: 4-bit threshold lookup vs the |x − level| search, both layouts
 * of a weight (B [K, N] read directly, W = Bᵀ in strips) vs the flat quantizer on Bᵀ, MatMulNBits
 * vs a per-element MLAS-style quantizer, and the half-to-even rounding of the int8 variants on
 * exact halves. Shapes cover blocks spanning rows, K not a multiple of the block, odd element
 * counts and all-zero blocks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { countBelow } from '../../../onnx/quantize/four-bit-encode.ts';
import { FP4_TABLE, fourBitCoding, NF4_TABLE, quantize4bit, quantize4bitWeight, type FourBitType } from '../../../onnx/quantize/nf4.ts';
import { quantizeNBitsWeight } from '../../../onnx/quantize/matmul-nbits.ts';
import { quantizeVectorwise } from '../../../onnx/quantize/llm-int8.ts';
import { quantizeInt8PerTensor } from '../../../onnx/quantize/dynamic-int8.ts';
import { kn, nk } from '../../../onnx/quantize/weight-source.ts';
import { transposeMatrix } from '../../../onnx/matrix.ts';
import { gaussian } from './fixtures.ts';

/** Nearest level by |x − level|, ties to the lower index (torch.argmin). */
function argminAbs(levels: ArrayLike<number>, x: number): number {
  let best = 0;
  for (let i = 1; i < levels.length; i++) if (Math.abs(x - levels[i]) < Math.abs(x - levels[best])) best = i;
  return best;
}

function refCode(type: FourBitType, x: number): number {
  if (type === 'nf4') return argminAbs(NF4_TABLE, x);
  return (x < 0 ? 8 : 0) | argminAbs(FP4_TABLE.subarray(0, 8), Math.abs(x));
}

/** float32 values around x: x itself and its `k` float32 neighbours on each side. */
function around(x: number, k: number): number[] {
  const b = new Float32Array([x]);
  const u = new Int32Array(b.buffer);
  const out: number[] = [];
  const base = u[0];
  for (let d = -k; d <= k; d++) {
    u[0] = base + d;
    out.push(b[0]);
  }
  return out;
}

test('threshold lookup: the kernel code of x equals the |x − level| search at every midpoint and cell edge ±40 ulps and at 200k random x', () => {
  for (const type of ['nf4', 'fp4'] as const) {
    const c = fourBitCoding(type);
    const levels = type === 'nf4' ? Array.from(NF4_TABLE) : Array.from(FP4_TABLE);
    const xs: number[] = [];
    for (const a of levels) for (const b of levels) xs.push(...around(Math.fround((a + b) / 2), 40), ...around((a + b) / 2, 40));
    for (let cell = 0; cell <= 128; cell++) xs.push(...around(-1 + cell / 64, 40), ...around(cell / 128, 40));
    let seed = 99;
    for (let i = 0; i < 200_000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      xs.push(Math.fround((seed / 2 ** 32) * 2 - 1));
    }
    xs.push(-1, 1, 0, -0);
    let checked = 0;
    for (const x of xs) {
      if (!(x >= -1 && x <= 1) || Math.fround(x) !== x) continue;
      const v = c.signBit ? Math.abs(x) : x;
      const code = c.signBit && x < 0 ? c.codeOf[countBelow(c.lookup, v)] | 8 : c.codeOf[countBelow(c.lookup, v)];
      assert.is(code, refCode(type, x), `${type} ${x}`);
      checked++;
    }
    assert.ok(checked > 200_000);
  }
});

test('4-bit: one block of special values (absmax 1) gets exactly the reference codes, high nibble first', () => {
  for (const type of ['nf4', 'fp4'] as const) {
    const levels = type === 'nf4' ? Array.from(NF4_TABLE) : Array.from(FP4_TABLE);
    const vals: number[] = [];
    for (let i = 0; i + 1 < levels.length; i++) vals.push(...around(Math.fround((levels[i] + levels[i + 1]) / 2), 3));
    for (const l of levels) vals.push(...around(l, 2).filter((v) => Math.abs(v) <= 1));
    const bs = 64;
    const w = new Float32Array(Math.ceil(vals.length / (bs - 1)) * bs);
    // Each block leads with 1 so its absmax is 1 and the scaled values are the values themselves.
    for (let b = 0, j = 0; b < w.length / bs; b++) {
      w[b * bs] = 1;
      for (let i = 1; i < bs; i++) w[b * bs + i] = j < vals.length ? vals[j++] : 0;
    }
    const q = quantize4bit(w, bs, type, false);
    for (let i = 0; i < w.length; i++) {
      const got = i % 2 === 0 ? q.packed[i >> 1] >> 4 : q.packed[i >> 1] & 15;
      assert.is(got, refCode(type, w[i]), `${type} w[${i}] = ${w[i]}`);
    }
  }
});

/** A [K, N] weight with some all-zero columns (all-zero blocks) and a few large values. */
function weight(K: number, N: number, seed: number): Float32Array {
  const b = gaussian(K * N, seed, 0.05);
  for (let k = 0; k < K; k++) b[k * N + (N >> 1)] = 0;
  b[3] = 2.5;
  b[b.length - 1] = -1.75;
  return b;
}

const SHAPES: [number, number][] = [
  [128, 24], // K a multiple of 64: nf4 reads B directly
  [96, 40], // blocks span two columns of B: strips of W
  [33, 3], // odd element count, K below one block
  [256, 7],
];

test('4-bit: B [K, N] read directly, W = Bᵀ in strips, and the flat quantizer on transposeMatrix(B) give the same bytes (nf4, fp4, double quant)', () => {
  for (const [K, N] of SHAPES)
    for (const type of ['nf4', 'fp4'] as const)
      for (const bs of [16, 64]) {
        const b = weight(K, N, K + N);
        const wt = transposeMatrix(b, K, N);
        const ref = quantize4bit(wt, bs, type, true);
        for (const [name, got] of [['KN', quantize4bitWeight(kn(b, K, N), bs, type, true)], ['NK', quantize4bitWeight(nk(wt, K, N), bs, type, true)]] as const) {
          const at = `${type} ${K}x${N} block ${bs} ${name}`;
          assert.equal(Array.from(got.packed), Array.from(ref.packed), `${at} codes`);
          assert.equal(Array.from(got.absmax), Array.from(ref.absmax), `${at} absmax`);
          assert.equal(Array.from(got.absmaxForNode), Array.from(ref.absmaxForNode), `${at} double-quant absmax`);
        }
        // and the flat quantizer itself against the element-wise reference
        for (let i = 0; i < K * N; i++) {
          const m = ref.absmax[Math.floor(i / bs)];
          const want = m === 0 ? (type === 'nf4' ? 7 : 0) : refCode(type, Math.max(-1, Math.min(1, Math.fround(wt[i] * Math.fround(1 / m)))));
          assert.is(i % 2 === 0 ? ref.packed[i >> 1] >> 4 : ref.packed[i >> 1] & 15, want, `${type} ${K}x${N} flat ${i}`);
        }
      }
});

/** MatMulNBits' quantizer element by element (MLAS BlockwiseQuantizer, roundf = half away from zero). */
function refNBits(b: Float32Array, K: number, N: number, bits: number, bs: number, symmetric: boolean) {
  const f = Math.fround;
  const kBlocks = Math.ceil(K / bs);
  const maxq = 2 ** bits - 1;
  const half = 2 ** (bits - 1);
  const codes = new Uint8Array(N * kBlocks * bs);
  const scales = new Float32Array(N * kBlocks);
  const zps = new Uint8Array(N * kBlocks);
  const roundf = (x: number) => Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < kBlocks; j++) {
      const vals: number[] = [];
      for (let k = j * bs; k < Math.min(K, (j + 1) * bs); k++) vals.push(b[k * N + n]);
      let mn = Math.min(...vals);
      let mx = Math.max(...vals);
      let scale: number;
      let zp: number;
      if (symmetric) {
        scale = f(-(Math.abs(mx) > Math.abs(mn) ? mx : mn) / half);
        zp = half;
      } else {
        mn = Math.min(mn, 0);
        mx = Math.max(mx, 0);
        scale = f(f(mx - mn) / maxq);
        const z = scale !== 0 ? f(-f(mn / scale)) : mn;
        zp = z < 0 ? 0 : z > maxq ? maxq : roundf(z);
      }
      scales[n * kBlocks + j] = scale;
      zps[n * kBlocks + j] = zp;
      const rs = scale !== 0 ? f(1 / scale) : 0;
      for (let i = 0; i < bs; i++)
        codes[(n * kBlocks + j) * bs + i] = i < vals.length ? Math.min(maxq, Math.max(0, roundf(f(f(vals[i] * rs) + zp)))) : zp;
    }
  return { codes, scales, zps, kBlocks };
}

test('MatMulNBits: both layouts equal the element-wise reference (4 and 8 bits, symmetric and not, K not a multiple of the block)', () => {
  for (const [K, N] of [[100, 24], [64, 5], [33, 3]] as const)
    for (const bits of [4, 8] as const)
      for (const symmetric of [true, false])
        for (const bs of [16, 32]) {
          const b = weight(K, N, 3 * K + N);
          for (let i = 0; i < N; i++) b[i] += 0.05; // skewed columns so zero points matter
          const ref = refNBits(b, K, N, bits, bs, symmetric);
          for (const [name, w] of [['KN', kn(b, K, N)], ['NK', nk(transposeMatrix(b, K, N), K, N)]] as const) {
            const got = quantizeNBitsWeight(w, bits, bs, symmetric);
            const at = `${K}x${N} ${bits} bits block ${bs} ${symmetric ? 'sym' : 'asym'} ${name}`;
            const codes = Array.from({ length: ref.codes.length }, (_, i) => (bits === 8 ? got.packed[i] : (got.packed[i >> 1] >> ((i & 1) * 4)) & 15));
            assert.equal(codes, Array.from(ref.codes), `${at} codes`);
            assert.equal(Array.from(got.scales), Array.from(ref.scales), `${at} scales`);
            assert.equal(Array.from(got.zeroPoints), Array.from(ref.zps), `${at} zero points`);
          }
        }
  // Exact halves: a symmetric 4-bit block led by −8 has scale 1 and zero point 8, so −7.5 + i
  // lands on i + 0.5 and roundf (half away from zero) gives i + 1.
  const b = new Float32Array(16);
  b[0] = -8;
  for (let i = 0; i < 15; i++) b[i + 1] = -7.5 + i;
  for (const w of [kn(b, 16, 1), nk(b, 16, 1)]) {
    const got = quantizeNBitsWeight(w, 4, 16, true);
    assert.equal(Array.from(got.scales), [1]);
    const codes = Array.from({ length: 16 }, (_, i) => (got.packed[i >> 1] >> ((i & 1) * 4)) & 15);
    assert.equal(codes, [0, ...Array.from({ length: 15 }, (_, i) => i + 1)]);
  }
});

test('int8 variants round exact halves to even and clamp to ±127 (llm-int8 per column, dynamic int8 per tensor)', () => {
  // max |b| = 127 → scale 1 (dynamic) and 127 / SCB = 1 (llm-int8): the scaled values are b itself.
  const b = Float32Array.from([127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 3.4999998, -3.5000002, 0]);
  const even = [127, 0, 2, 2, 0, -2, -2, 126, -126, 3, -4, 0];
  assert.equal(Array.from(quantizeInt8PerTensor(b).q), even);
  const col = quantizeVectorwise(b, b.length, 1);
  assert.equal(Array.from(col.cb), even);
  assert.equal(Array.from(col.scb), [127]);
  // Several columns: each scaled by its own max, row-major [K, N] kept.
  const K = 37, N = 11;
  const w = weight(K, N, 5);
  const { cb, scb } = quantizeVectorwise(w, K, N);
  for (let k = 0; k < K; k++)
    for (let n = 0; n < N; n++) {
      let m = 0;
      for (let r = 0; r < K; r++) m = Math.max(m, Math.abs(w[r * N + n]));
      assert.is(scb[n], m);
      const x = m === 0 ? 0 : Math.fround(w[k * N + n] * Math.fround(127 / m));
      const r = Math.round(x);
      const want = Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
      assert.is(cb[k * N + n], want === 0 ? 0 : want, `cb[${k},${n}]`);
    }
});

test.run();
