/**
 * The transposed dequantized weight Ŵᵀ [N, K] of a quantized linear layer, computed INSIDE the
 * attribution graph from the model's own packed initializers (by name), so the graph never holds
 * a float copy of a quantized weight: each run dequantizes one layer at a time, just before its
 * backward MatMul reads it, and ONNX Runtime frees it after (dx = dy·Ŵᵀ).
 *
 * The values equal dequantize.ts's reference bit for bit: every step is exact in float32 (nibbles
 * and code values looked up from the bytes, q − zp on small integers) except the final product
 * with the scale, one rounding as in the reference (Math.fround((q − zp)·scale)); the tests
 * compare the two.
 *
 * Every initializer is read through `gate` (GradEmitter.gate): a Slice whose start is a zero
 * computed at run time from the unit's incoming gradient, so ONNX Runtime's constant folding
 * cannot turn the dequantization into a float initializer (which would be the resident copy
 * again), and the work is scheduled where that gradient exists, not all layers up front.
 */
import { QuantlensError } from '../../core/errors.ts';
import { NF4_TABLE, FP4_TABLE, type FourBitType } from '../quantize/nf4.ts';
import { tensor } from '../builder.ts';
import type { GradEmitter } from './emitter.ts';

/** Reads a stored tensor at run time (see GradEmitter.gate); `after` is the unit's gradient. */
export type Gate = (name: string) => string;

const CAST_FLOAT = { to: 1 };

function floatOf(e: GradEmitter, x: string): string {
  return e.op1('Cast', [x], CAST_FLOAT);
}

function reshape(e: GradEmitter, x: string, dims: number[]): string {
  return e.op1('Reshape', [x, e.i64(dims)]);
}

/**
 * Bytes [rows, L] (uint8) → their two 4-bit halves [rows, 2L] as float32, in memory order: element
 * 2i is the low nibble of byte i when lowFirst (MatMulNBits), the high one otherwise
 * (bitsandbytes); `values` maps each nibble (the NF4/FP4 code table), else the nibble itself.
 * One Gather from a [256, 2] table: two passes over the packed bytes instead of one per step.
 */
function nibbles(e: GradEmitter, bytes: string, rows: number, L: number, lowFirst: boolean, values?: Float32Array): string {
  const pairs = e.op1('Gather', [nibbleTable(e, lowFirst, values), e.op1('Cast', [bytes], { to: 6 })], { axis: 0 });
  return reshape(e, pairs, [rows, 2 * L]);
}

const tables = new WeakMap<GradEmitter, Map<string, string>>();

/** The [256, 2] table of nibbles() as a Constant, one per graph and kind. */
function nibbleTable(e: GradEmitter, lowFirst: boolean, values?: Float32Array): string {
  const byKind = tables.get(e) ?? new Map<string, string>();
  tables.set(e, byKind);
  const kind = `${lowFirst}:${values ? Array.from(values).join(',') : ''}`;
  let name = byKind.get(kind);
  if (!name) {
    const table = new Float32Array(512);
    for (let b = 0; b < 256; b++) {
      const [first, second] = lowFirst ? [b & 15, b >> 4] : [b >> 4, b & 15];
      table[2 * b] = values ? values[first] : first;
      table[2 * b + 1] = values ? values[second] : second;
    }
    byKind.set(kind, (name = e.constTensor(tensor('float', [256, 2], table), 'nibble_table')));
  }
  return name;
}

/** Columns [0, n) of a [rows, m] tensor (m ≥ n); the tensor itself when m = n. */
function firstColumns(e: GradEmitter, x: string, m: number, n: number): string {
  return m === n ? x : e.op1('Slice', [x, e.i64([0]), e.i64([n]), e.i64([1])]);
}

export interface NBitsStorage {
  packed: string;
  scales: string;
  zeroPoints?: string;
  /** Scales are float16 (fp16 models): widened to float32 first, as the reference reads them. */
  scalesHalf: boolean;
}

/** MatMulNBits: packed [N, kBlocks, blob] (4-bit low nibble first), scales [N, kBlocks], zp [N, ⌈kBlocks·bits/8⌉]. */
export function nbitsWeightT(e: GradEmitter, gate: Gate, s: NBitsStorage, K: number, N: number, bits: number, blockSize: number): string {
  if (bits !== 4 && bits !== 8) throw new QuantlensError('UNSUPPORTED', `MatMulNBits with bits=${bits}: only 4 and 8 have a gradient`);
  const kBlocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const bytes = reshape(e, gate(s.packed), [N * kBlocks, blob]);
  const q = bits === 4 ? nibbles(e, bytes, N * kBlocks, blob, true) : floatOf(e, bytes); // [N·kBlocks, blockSize]
  let zp: string;
  if (s.zeroPoints) {
    const zpRow = Math.ceil((kBlocks * bits) / 8);
    const z = reshape(e, gate(s.zeroPoints), [N, zpRow]);
    const perBlock = bits === 4 ? firstColumns(e, nibbles(e, z, N, zpRow, true), 2 * zpRow, kBlocks) : firstColumns(e, floatOf(e, z), zpRow, kBlocks);
    zp = reshape(e, perBlock, [N * kBlocks, 1]);
  } else {
    zp = e.scalar(2 ** (bits - 1), 'float32');
  }
  let scales = reshape(e, gate(s.scales), [N * kBlocks, 1]);
  if (s.scalesHalf) scales = floatOf(e, scales);
  const w = e.op1('Mul', [e.op1('Sub', [q, zp]), scales]);
  return firstColumns(e, reshape(e, w, [N, kBlocks * blockSize]), kBlocks * blockSize, K);
}

/** MatMulBnb4: codes of W = Bᵀ [N, K] flattened (high nibble first), absmax per flat block. */
export function bnb4WeightT(e: GradEmitter, gate: Gate, packed: string, absmax: string, K: number, N: number, blockSize: number, type: FourBitType): string {
  const n = N * K;
  const bytesLen = Math.ceil(n / 2);
  const blocks = Math.ceil(n / blockSize);
  // Code values table[c] straight from the bytes, [1, 2·bytesLen] in flat order.
  const codes = nibbles(e, reshape(e, gate(packed), [1, bytesLen]), 1, bytesLen, false, Float32Array.from(type === 'nf4' ? NF4_TABLE : FP4_TABLE));
  let flat = firstColumns(e, codes, 2 * bytesLen, n);
  // Pad to whole blocks so each block row meets its absmax; the padding is sliced off again.
  if (blocks * blockSize > n) flat = e.op1('Pad', [flat, e.i64([0, 0, 0, blocks * blockSize - n])], { mode: 'constant' });
  const w = e.op1('Mul', [reshape(e, flat, [blocks, blockSize]), reshape(e, gate(absmax), [blocks, 1])]);
  return reshape(e, firstColumns(e, reshape(e, w, [1, blocks * blockSize]), blocks * blockSize, n), [N, K]);
}

/** llm-int8 outlier path: Ŵ = f(f(CB·SCB[n])·inv127), CB [K, N] int8 → Ŵᵀ [N, K]. */
export function vectorwiseWeightT(e: GradEmitter, gate: Gate, cb: string, scb: string, inv127: number): string {
  const scaled = e.op1('Mul', [floatOf(e, gate(cb)), gate(scb)]);
  return e.op1('Transpose', [e.op1('Mul', [scaled, e.scalar(inv127, 'float32')])], { perm: [1, 0] });
}

/**
 * MatMulInteger weight q [K, N] (int8/uint8) with zero point and scale, each a scalar or [N]:
 * Ŵ = f((q − zp)·scale) → Ŵᵀ [N, K]. zeroPoint undefined = 0.
 */
export function integerWeightT(e: GradEmitter, gate: Gate, q: string, zeroPoint: string | undefined, scale: string): string {
  const qf = floatOf(e, gate(q));
  const centred = zeroPoint ? e.op1('Sub', [qf, floatOf(e, gate(zeroPoint))]) : qf;
  return e.op1('Transpose', [e.op1('Mul', [centred, floatOf(e, gate(scale))])], { perm: [1, 0] });
}
