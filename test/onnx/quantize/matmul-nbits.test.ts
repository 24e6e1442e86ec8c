import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { f32, gaussian, identity, quantizedNode, runY, tmpDir, writeMatMulModel } from './fixtures.ts';

/** Independent dequantization of MatMulNBits storage: (code - zp) * scale, B [N, kBlocks, blob]. */
function refDequant(packed: Uint8Array, scales: Float32Array, zp: Uint8Array | null, K: number, N: number, bits: number, bs: number): Float32Array {
  const kBlocks = Math.ceil(K / bs);
  const blob = (bs * bits) / 8;
  const zpRow = Math.ceil((kBlocks * bits) / 8);
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const j = Math.floor(k / bs);
      const i = k % bs;
      const byte = packed[(n * kBlocks + j) * blob + (bits === 8 ? i : i >> 1)];
      const code = bits === 8 ? byte : i % 2 === 0 ? byte & 15 : byte >> 4;
      let z = 2 ** (bits - 1);
      if (zp) {
        const zb = zp[n * zpRow + (bits === 8 ? j : j >> 1)];
        z = bits === 8 ? zb : j % 2 === 0 ? zb & 15 : zb >> 4;
      }
      out[k * N + n] = Math.fround((code - z) * scales[n * kBlocks + j]);
    }
  return out;
}

const cases = [
  { variant: 'q4', bs: 32, symmetric: true },
  { variant: 'q4', bs: 16, symmetric: false },
  { variant: 'q4', bs: 64, symmetric: false },
  { variant: 'int8', bs: 32, symmetric: true },
  { variant: 'int8', bs: 128, symmetric: false },
] as const;

for (const c of cases) {
  test(`MatMulNBits ${c.variant} block ${c.bs} ${c.symmetric ? 'symmetric' : 'asymmetric'}: ORT's effective weight = JS dequantization; activations stay float`, async () => {
    const dir = tmpDir();
    const K = 100, N = 24; // K not a multiple of the block: the last block is padded
    const w = gaussian(K * N, 3, 0.1);
    for (let i = 0; i < N; i++) w[i] += 0.05; // skewed columns so zero points matter
    const src = writeMatMulModel(dir, K, N, w);
    const out = path.join(dir, 'q.onnx');
    await quantizeModel(src, c.variant, out, { blockSize: c.bs, symmetric: c.symmetric, includeLmHead: true });
    const { inputs, attrs } = quantizedNode(out, 'MatMulNBits');
    const bits = c.variant === 'q4' ? 4 : 8;
    assert.equal(attrs, { K, N, bits, block_size: c.bs, accuracy_level: 0 });
    assert.is(inputs.length, c.symmetric ? 3 : 4, 'no g_idx, zero points only when asymmetric');
    const ref = refDequant(inputs[1]!, f32(inputs[2]!), c.symmetric ? null : inputs[3]!, K, N, bits, c.bs);
    const eff = await runY(out, identity(K), K, K);
    assert.equal(Array.from(eff), Array.from(ref));
    // quantization error: half a step, except symmetric's clamped side (+2^(bits-1) → 2^(bits-1)-1): one step
    const scales = f32(inputs[2]!);
    const kBlocks = Math.ceil(K / c.bs);
    for (let k = 0; k < K; k++)
      for (let n = 0; n < N; n++) {
        const s = Math.abs(scales[n * kBlocks + Math.floor(k / c.bs)]);
        assert.ok(Math.abs(ref[k * N + n] - w[k * N + n]) <= (c.symmetric ? 1 : 0.5) * s * 1.0001 + 1e-9, `error at ${k},${n}`);
      }
    // Random activations: ORT equals float64 x @ B_eff to float32 accuracy (int8 activations would be ~1e-3 off).
    const M = 7;
    const x = gaussian(M * K, 5);
    const y = await runY(out, x, M, K);
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let acc = 0, mag = 0;
        for (let k = 0; k < K; k++) {
          acc += x[m * K + k] * ref[k * N + n];
          mag += Math.abs(x[m * K + k] * ref[k * N + n]);
        }
        assert.ok(Math.abs(y[m * N + n] - acc) <= 1e-5 * mag, `y[${m},${n}] ${y[m * N + n]} vs ${acc}`);
      }
  });
}

test('the accuracy-level trap is real: the same node with accuracy_level 4 fails the float-activation check', async () => {
  const dir = tmpDir();
  const K = 128, N = 16, M = 4;
  const w = gaussian(K * N, 21, 0.1);
  const src = writeMatMulModel(dir, K, N, w);
  const out = path.join(dir, 'q.onnx');
  await quantizeModel(src, 'q4', out, { includeLmHead: true });
  // Flip the attribute bytes in place: accuracy_level varint 0 → 4 (same length, so the file stays valid).
  const m = readOnnxModel(out);
  const node = m.nodes.find((n) => n.opType === 'MatMulNBits')!;
  const bytes = Buffer.from(m.source.read(0, m.size));
  m.source.close();
  const nodeBytes = bytes.subarray(node.range[0], node.range[1]);
  const name = Buffer.from('accuracy_level');
  const at = nodeBytes.indexOf(name);
  // AttributeProto: name(1) then i(3): tag 0x18, value 0
  assert.is(nodeBytes[at + name.length], 0x18);
  assert.is(nodeBytes[at + name.length + 1], 0);
  nodeBytes[at + name.length + 1] = 4;
  const trap = path.join(dir, 'trap.onnx');
  writeFileSync(trap, bytes);
  const x = gaussian(M * K, 9, 3);
  const good = await runY(out, x, M, K);
  const bad = await runY(trap, x, M, K);
  let rel = 0;
  for (let i = 0; i < good.length; i++) rel = Math.max(rel, Math.abs(good[i] - bad[i]) / (Math.abs(good[i]) + 1e-3));
  assert.ok(rel > 1e-4, `accuracy_level 4 changed outputs by only ${rel}`);
});

test('unsupported block sizes are refused with a one-line QUANTIZE error, nothing written', async () => {
  const dir = tmpDir();
  const src = writeMatMulModel(dir, 32, 8, gaussian(256, 1));
  for (const variant of ['q4', 'nf4', 'int8'] as const) {
    try {
      await quantizeModel(src, variant, path.join(dir, 'x.onnx'), { blockSize: 48 });
      assert.unreachable('should throw');
    } catch (e) {
      assert.instance(e, QuantlensError);
      assert.is((e as QuantlensError).code, 'QUANTIZE');
      assert.is((e as Error).message, 'unsupported block size 48 (use 16, 32, 64, 128 or 256)');
    }
  }
});

test.run();
