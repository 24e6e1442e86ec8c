import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { dynamicMap, fp4Code, nf4Code, quantize4bit } from '../../../onnx/quantize/nf4.ts';
import { f32, gaussian, identity, quantizedNode, runY, tmpDir, writeMatMulModel } from './fixtures.ts';

// ---- an independent, from-scratch bitsandbytes reference (QLoRA appendix / bnb quantize_4bit) ----
const NF4 = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
].map(Math.fround);
// FP4 e2m1 values / 12, sign in bit 3.
const FP4 = [0, 1 / 192, 2 / 3, 1, 1 / 3, 1 / 2, 1 / 6, 1 / 4].map(Math.fround);

function argminAbs(levels: number[], x: number): number {
  let best = 0;
  for (let i = 1; i < levels.length; i++) if (Math.abs(x - levels[i]) < Math.abs(x - levels[best])) best = i;
  return best;
}

/** bnb's signed dynamic map from its definition: midpoints of linspace(0.1, 1, 2^i + 1) × 10^(i-6). */
function refDynamicMap(): number[] {
  const v: number[] = [0, 1];
  for (let i = 0; i < 7; i++) {
    const n = 2 ** i + 1;
    for (let k = 0; k + 1 < n; k++) {
      const a = 0.1 + (0.9 * k) / (n - 1);
      const b = 0.1 + (0.9 * (k + 1)) / (n - 1);
      const m = Math.fround(10 ** (i - 6) * ((a + b) / 2));
      v.push(m, -m);
    }
  }
  return v.sort((x, y) => x - y);
}

function refQuantize(w: Float32Array, bs: number, type: 'nf4' | 'fp4'): { codes: number[]; absmax: number[] } {
  const codes: number[] = [];
  const absmax: number[] = [];
  for (let s = 0; s < w.length; s += bs) {
    const block = Array.from(w.subarray(s, Math.min(w.length, s + bs)));
    const m = Math.max(...block.map(Math.abs));
    absmax.push(m);
    for (const x of block) {
      const y = Math.max(-1, Math.min(1, Math.fround(x * Math.fround(1 / m))));
      codes.push(type === 'nf4' ? argminAbs(NF4, y) : (y < 0 ? 8 : 0) | argminAbs(FP4, Math.abs(y)));
    }
  }
  return { codes, absmax };
}

function unpack(packed: Uint8Array, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (i % 2 === 0 ? packed[i >> 1] >> 4 : packed[i >> 1] & 15));
}

test('threshold code lookup = the |x − level| search: table values, midpoints and their float32 neighbours, random values', () => {
  const xs: number[] = [];
  const f32Next = (x: number, up: boolean) => {
    const b = new Float32Array([x]);
    const u = new Int32Array(b.buffer);
    u[0] += (x >= 0) === up ? 1 : -1;
    return b[0];
  };
  for (const levels of [NF4, FP4, FP4.map((v) => -v)])
    for (let i = 0; i < levels.length; i++) {
      xs.push(levels[i]);
      for (let j = 0; j < levels.length; j++) {
        if (i === j) continue;
        const mid = Math.fround((levels[i] + levels[j]) / 2);
        xs.push(mid, f32Next(mid, true), f32Next(mid, false));
      }
    }
  let seed = 12345;
  for (let k = 0; k < 100_000; k++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    xs.push(Math.fround((seed / 2 ** 32) * 2 - 1));
  }
  xs.push(-1, 1, 0, -0);
  for (const x of xs.filter((v) => v >= -1 && v <= 1)) {
    assert.is(nf4Code(x), argminAbs(NF4, x), `nf4 ${x}`);
    assert.is(fp4Code(x), (x < 0 ? 8 : 0) | argminAbs(FP4, Math.abs(x)), `fp4 ${x}`);
  }
});

test('NF4 and FP4 codes equal a from-scratch bnb quantizer on fixed vectors (block 64, high nibble first)', () => {
  const fixed = Float32Array.from([0, 1, -1, 0.5, -0.5, 0.0796, 0.04, -0.045, 0.999, -0.7, 0.3379, 3, -2.25]);
  for (const w of [fixed, gaussian(64 * 7 + 13, 1)])
    for (const type of ['nf4', 'fp4'] as const) {
      const q = quantize4bit(w, 64, type, false);
      const ref = refQuantize(w, 64, type);
      assert.equal(unpack(q.packed, w.length), ref.codes, `${type} codes`);
      assert.equal(Array.from(q.absmax), ref.absmax.map(Math.fround), `${type} absmax`);
    }
  // One hand-checked value: 0.5 / 1 in a block with absmax 1 → NF4 level 0.4407 (index 12) vs 0.5626 (13): 12.
  const q = quantize4bit(Float32Array.from([1, 0.5]), 64, 'nf4', false);
  assert.equal(q.packed[0], (15 << 4) | 12);
});

test('double quantization: absmax - mean quantized with the dynamic map in blocks of 256; node stores the dequantized absmax', () => {
  const map = dynamicMap();
  const ref = refDynamicMap();
  assert.is(map.length, 256);
  // Same values up to 2 float32 ulps (bnb builds it with float32 torch.linspace).
  for (let i = 0; i < 256; i++) assert.ok(Math.abs(map[i] - ref[i]) <= 3e-7 * Math.abs(ref[i]), `map[${i}] ${map[i]} vs ${ref[i]}`);
  // 600 blocks → 3 second-level blocks (256, 256, 88); absmax values spread over two decades.
  const w = new Float32Array(64 * 600);
  const g = gaussian(w.length, 7);
  for (let i = 0; i < w.length; i++) w[i] = g[i] * (0.01 + (Math.floor(i / 64) % 37) / 10);
  const q = quantize4bit(w, 64, 'nf4', true);
  const n = q.nested!;
  const mean = q.absmax.reduce((a, b) => a + b, 0) / q.absmax.length;
  assert.ok(Math.abs(n.offset - mean) <= 1e-6 * mean);
  assert.is(n.absmax2.length, 3);
  for (let b = 0; b < 3; b++) {
    const seg = Array.from(q.absmax.subarray(b * 256, (b + 1) * 256));
    const m2 = Math.max(...seg.map((a) => Math.abs(Math.fround(a - n.offset))));
    assert.is(n.absmax2[b], Math.fround(m2));
    seg.forEach((a, j) => {
      const i = b * 256 + j;
      const x = Math.max(-1, Math.min(1, Math.fround(Math.fround(a - n.offset) * Math.fround(1 / m2))));
      assert.is(n.codes[i], argminAbs(Array.from(map), x), `absmax code ${i}`);
      assert.is(q.absmaxForNode[i], Math.fround(Math.fround(map[n.codes[i]] * m2) + n.offset));
      // Dequantized absmax is within half a map step of the true one.
      assert.ok(Math.abs(q.absmaxForNode[i] - a) <= 0.02 * m2 + 1e-7);
    });
  }
  // Codes are computed with the FIRST-level absmax, as bnb does.
  assert.equal(unpack(q.packed, w.length), refQuantize(w, 64, 'nf4').codes);
});

for (const [type, dq] of [['nf4', true], ['nf4', false], ['fp4', true]] as const) {
  test(`MatMulBnb4 ${type} (double quant ${dq}): ORT's effective weight equals the stored codes dequantized in JS`, async () => {
    const dir = tmpDir();
    const K = 96, N = 40; // N*K/64 = 60 blocks that straddle rows, as bnb's flat blocks do
    const w = gaussian(K * N, 11, 0.05);
    const src = writeMatMulModel(dir, K, N, w);
    const out = path.join(dir, `model_${type}.onnx`);
    const r = await quantizeModel(src, type, out, { doubleQuant: dq, includeLmHead: true });
    assert.equal(r.quantized, ['/model/layers.0/mlp/up_proj/MatMul']);
    const { inputs, attrs } = quantizedNode(out, 'MatMulBnb4');
    assert.equal(attrs, { K, N, block_size: 64, quant_type: type === 'nf4' ? 1 : 0 });
    const codes = unpack(inputs[1]!, K * N);
    const absmax = f32(inputs[2]!);
    const levels = type === 'nf4' ? NF4 : [...FP4, ...FP4.map((v) => -v)];
    const eff = await runY(out, identity(K), K, K); // row k of Y = row k of the effective B
    let maxErr = 0;
    for (let k = 0; k < K; k++)
      for (let n = 0; n < N; n++) {
        const flat = n * K + k; // W = B^T flattened [N, K]
        const expect = Math.fround(levels[codes[flat]] * absmax[Math.floor(flat / 64)]);
        assert.is(eff[k * N + n], expect, `B_eff[${k},${n}]`);
        maxErr = Math.max(maxErr, Math.abs(eff[k * N + n] - w[k * N + n]));
      }
    // and it is a quantization of W, not something else: error below half the widest level gap × absmax
    assert.ok(maxErr > 0 && maxErr < 0.2 * Math.max(...absmax), `max |W_eff - W| ${maxErr}`);
  });
}

test.run();
