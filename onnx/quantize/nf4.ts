/**
 * bitsandbytes 4-bit weight quantization (NF4 / FP4, QLoRA) with double quantization, reproduced
 * for ONNX Runtime's com.microsoft MatMulBnb4. The paper's 4-bit setting is
 * `BitsAndBytesConfig(load_in_4bit, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True)`,
 * i.e. block 64, absmax double-quantized with bnb's signed dynamic 8-bit map in blocks of 256.
 *
 * The algorithm (bitsandbytes quantize_4bit + quantize_blockwise, re-derived here):
 *  - W is the PyTorch weight [N = out, K = in], flattened row-major; blocks of `blockSize`
 *    consecutive elements (blocks may span rows, exactly as bnb, and as MatMulBnb4 reads them).
 *  - absmax[b] = max |w| in the block (float32); scaled = clamp(w * (1/absmax), -1, 1), float32.
 *  - code = index of the nearest table level (ties → lower index, like torch.argmin; bnb's CUDA
 *    decision tree compares `x > midpoint`, which agrees). FP4 codes carry the sign in bit 3 as
 *    the CUDA kernel does (so a small negative value rounds to -0, numerically 0).
 *  - Packing: two codes per byte, the even flat index in the HIGH nibble (bnb and MatMulBnb4).
 *  - Double quant: offset = mean(absmax); (absmax - offset) is quantized with the dynamic map in
 *    blocks of 256 (absmax2 = per-block max |.|, nearest code); bnb dequantizes it as
 *    code8[q] * absmax2 + offset (float32). MatMulBnb4 has no nested-absmax input, so the node
 *    stores that DEQUANTIZED absmax: the arithmetic ORT applies equals bnb's dequantize_4bit.
 *
 * Known differences from bnb: mean(absmax) is summed in float64 then rounded once (torch sums
 * float32 pairwise; can differ in the last bit of `offset`); an all-zero block gets code "0" and
 * absmax 0 where bnb would compute 0 * inf (NaN) and its kernel's comparisons decide.
 */
import { type VariantEmitter, type WeightPlan } from './variants.ts';
import { encode4bit, encode4bitColumns, thresholdLookup, type FourBitCoding } from './four-bit-encode.ts';
import { forEachRowStrip, type SourceWeight } from './weight-source.ts';

export type FourBitType = 'nf4' | 'fp4';

/** bitsandbytes' NF4 levels (float32), index = code. */
export const NF4_TABLE = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
]);

/** bitsandbytes' FP4 (e2m1, bias 3) levels: [0, .0625, 8, 12, 4, 6, 2, 3] / 12 and negatives. */
export const FP4_TABLE = Float32Array.from(
  [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3].map((v) => v / 12),
);

/**
 * bnb `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: for exponent
 * i = 0..6, the midpoints of torch.linspace(0.1, 1, 2^i + 1) scaled by 10^(i-6), both signs,
 * plus 0 and 1, sorted (256 float32 values). linspace follows torch's float32 CPU kernel
 * (start + k*step for the first half, end - (n-1-k)*step for the second).
 */
export function dynamicMap8(): Float32Array {
  const f = Math.fround;
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const n = 2 ** i + 1;
    const step = f(f(1 - f(0.1)) / (n - 1));
    const b: number[] = [];
    for (let k = 0; k < n; k++) b.push(k < Math.floor(n / 2) ? f(f(0.1) + f(step * k)) : f(1 - f(step * (n - 1 - k))));
    const scale = f(10 ** (i - 6));
    for (let k = 0; k + 1 < n; k++) {
      const mean = f(f(b[k] + b[k + 1]) / 2);
      const v = f(scale * mean);
      data.push(v, -v);
    }
  }
  data.push(0, 1);
  while (data.length < 256) data.push(0);
  data.sort((a, b) => a - b);
  return Float32Array.from(data);
}

let dynamicMapCache: Float32Array | null = null;
export function dynamicMap(): Float32Array {
  return (dynamicMapCache ??= dynamicMap8());
}

/** Nearest index in an ascending table by binary search; ties and duplicates go to the lowest index. */
function nearestSorted(table: Float32Array, x: number): number {
  let lo = 0;
  let hi = table.length - 1;
  if (x <= table[lo]) return lo;
  if (x >= table[hi]) {
    // First index holding the maximum (ties → lowest).
    let i = hi;
    while (i > 0 && table[i - 1] === table[hi]) i--;
    return i;
  }
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (table[mid] <= x) lo = mid;
    else hi = mid;
  }
  // table[lo] <= x < table[hi]; walk lo back over duplicates so ties pick the lowest index.
  while (lo > 0 && table[lo - 1] === table[lo]) lo--;
  return Math.abs(x - table[lo]) <= Math.abs(table[hi] - x) ? lo : hi;
}


/** NF4 code of a value already scaled to [-1, 1] (nearest level; ties → lower index). */
/**
 * Nearest-code search as decision thresholds: code = how many midpoints of neighbouring table
 * values lie below x, with x exactly on a midpoint going to the lower code (as nearestSorted and
 * bnb do). A table value and a scaled float32 weight are both float32, so (a + b) / 2 and the
 * comparison are exact in float64 and the codes are identical to the |x − t| search, at four
 * comparisons per weight instead of a search loop and a function call.
 */
const NF4_MIDPOINTS = Float64Array.from({ length: 15 }, (_, k) => (NF4_TABLE[k] + NF4_TABLE[k + 1]) / 2);

export function nf4Code(x: number): number {
  const m = NF4_MIDPOINTS;
  let c = x > m[7] ? 8 : 0;
  if (x > m[c + 3]) c += 4;
  if (x > m[c + 1]) c += 2;
  if (x > m[c]) c += 1;
  return c;
}

/**
 * FP4 magnitudes are not stored in order ([0, 0.0625, 8, 12, 4, 6, 2, 3] / 12), so the nearest
 * magnitude is found in sorted order and mapped back; a tie between two magnitudes goes to the
 * lower table index, as the linear |x − t| search does.
 */
const FP4_BY_SIZE = Array.from({ length: 8 }, (_, i) => i).sort((a, b) => FP4_TABLE[a] - FP4_TABLE[b]);
const FP4_SPLITS = FP4_BY_SIZE.slice(0, 7).map((code, k) => ({
  mid: (FP4_TABLE[code] + FP4_TABLE[FP4_BY_SIZE[k + 1]]) / 2,
  /** On the midpoint itself: the upper magnitude wins only if its table index is lower. */
  tieUp: FP4_BY_SIZE[k + 1] < code,
}));

export function fp4Code(x: number): number {
  const a = Math.abs(x);
  let k = 0;
  while (k < 7 && (a > FP4_SPLITS[k].mid || (a === FP4_SPLITS[k].mid && FP4_SPLITS[k].tieUp))) k++;
  const mag = FP4_BY_SIZE[k];
  return x < 0 ? mag | 8 : mag;
}

export interface FourBitQuantized {
  /** ceil(n / 2) bytes, even flat index in the high nibble. */
  packed: Uint8Array;
  /** First-level absmax per block (float32), before double quantization. */
  absmax: Float32Array;
  /** The absmax MatMulBnb4 gets: `absmax`, or its double-quant dequantization. */
  absmaxForNode: Float32Array;
  /** Double-quant state (present when doubleQuant). */
  nested?: { codes: Uint8Array; absmax2: Float32Array; offset: number; blockSize: number };
}

/** The largest double below x (x > 0) or above it (x < 0). */
function prevDouble(x: number): number {
  const b = new Float64Array([x]);
  const u = new BigInt64Array(b.buffer);
  u[0] += x > 0 ? -1n : 1n;
  return b[0];
}

/** NF4 and FP4 as threshold counts for the bulk kernel (four-bit-encode.ts); the same codes as nf4Code / fp4Code. */
const CODINGS: Record<FourBitType, FourBitCoding> = {
  nf4: { lookup: thresholdLookup(Array.from(NF4_MIDPOINTS), -1, 1), codeOf: Uint8Array.from({ length: 17 }, (_, c) => Math.min(c, 15)), signBit: false, zeroCode: 7 },
  fp4: {
    // "a > mid, or a = mid when the upper magnitude has the lower index" is a > (mid or the double just below it).
    lookup: thresholdLookup(FP4_SPLITS.map((s) => (s.tieUp ? prevDouble(s.mid) : s.mid)), 0, 1),
    codeOf: Uint8Array.from({ length: 10 }, (_, k) => FP4_BY_SIZE[Math.min(k, 7)]),
    signBit: true,
    zeroCode: 0,
  },
};

/** The kernel's coding of a 4-bit type (tests compare it with nf4Code / fp4Code). */
export function fourBitCoding(type: FourBitType): FourBitCoding {
  return CODINGS[type];
}

/** Quantize W (flattened [N, K] row-major, float32 values) the bitsandbytes way. */
export function quantize4bit(w: Float32Array, blockSize: number, type: FourBitType, doubleQuant: boolean): FourBitQuantized {
  const out = fourBitBuffers(w.length, blockSize);
  encode4bit(w, 0, blockSize, CODINGS[type], out.packed, out.absmax);
  return finish4bit(out.packed, out.absmax, w.length, type, doubleQuant);
}

/**
 * The same quantization of a weight in either layout (weight-source.ts): B [K, N] with K a multiple
 * of blockSize is read as it is (encode4bitColumns); otherwise W's rows are visited in strips whose
 * first flat index is a multiple of blockSize, so bnb's flat blocks (which may span rows) never
 * straddle a strip, and a [K, N] weight is never transposed whole.
 */
export function quantize4bitWeight(w: SourceWeight, blockSize: number, type: FourBitType, doubleQuant: boolean): FourBitQuantized {
  const n = w.K * w.N;
  const out = fourBitBuffers(n, blockSize);
  if (w.layout === 'KN' && w.K % blockSize === 0) {
    encode4bitColumns(w.data, w.K, w.N, blockSize, CODINGS[type], out.packed, out.absmax);
    return finish4bit(out.packed, out.absmax, n, type, doubleQuant);
  }
  const rowsAligned = blockSize / gcd(w.K, blockSize);
  const rows = rowsAligned * Math.max(1, Math.round(STRIP_ROWS / rowsAligned));
  forEachRowStrip(w, rows, (strip, n0) => encode4bit(strip, n0 * w.K, blockSize, CODINGS[type], out.packed, out.absmax));
  return finish4bit(out.packed, out.absmax, n, type, doubleQuant);
}

/** Rows of W per strip: a strip of a [K, N] weight (STRIP_ROWS × K floats) stays in L2. */
const STRIP_ROWS = 32;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

function fourBitBuffers(n: number, blockSize: number): { packed: Uint8Array; absmax: Float32Array } {
  return { packed: new Uint8Array(Math.ceil(n / 2)), absmax: new Float32Array(Math.ceil(n / blockSize)) };
}

function finish4bit(packed: Uint8Array, absmax: Float32Array, n: number, type: FourBitType, doubleQuant: boolean): FourBitQuantized {
  // An odd element count pads the last low nibble with code 0 (bnb pads with 0.0 → its code).
  if (n & 1) packed[n >> 1] |= CODINGS[type].zeroCode;
  if (!doubleQuant) return { packed, absmax, absmaxForNode: absmax };
  const nested = doubleQuantize(absmax);
  return { packed, absmax, absmaxForNode: nested.dequantized, nested: { codes: nested.codes, absmax2: nested.absmax2, offset: nested.offset, blockSize: 256 } };
}

/** bnb double quantization of absmax: mean offset, dynamic 8-bit map, blocks of 256. */
export function doubleQuantize(absmax: Float32Array): { codes: Uint8Array; absmax2: Float32Array; offset: number; dequantized: Float32Array } {
  const f = Math.fround;
  const map = dynamicMap();
  const zeroIdx = nearestSorted(map, 0);
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i];
  const offset = f(sum / absmax.length);
  const n = absmax.length;
  const blocks = Math.ceil(n / 256);
  const absmax2 = new Float32Array(blocks);
  const codes = new Uint8Array(n);
  const dequantized = new Float32Array(n);
  for (let b = 0; b < blocks; b++) {
    const s = b * 256;
    const e = Math.min(n, s + 256);
    let m = 0;
    for (let i = s; i < e; i++) m = Math.max(m, Math.abs(f(absmax[i] - offset)));
    absmax2[b] = m;
    const inv = f(1 / m);
    for (let i = s; i < e; i++) {
      const c = m === 0 ? zeroIdx : nearestSorted(map, Math.min(1, Math.max(-1, f(f(absmax[i] - offset) * inv))));
      codes[i] = c;
      dequantized[i] = f(f(map[c] * m) + offset);
    }
  }
  return { codes, absmax2, offset, dequantized };
}

/** The weight MatMulBnb4 applies: table[code] * absmax[block] (float32), flattened [N, K]. */
export function dequantize4bit(packed: Uint8Array, absmax: Float32Array, n: number, blockSize: number, type: FourBitType): Float32Array {
  const table = type === 'nf4' ? NF4_TABLE : FP4_TABLE;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = packed[i >> 1];
    const c = i & 1 ? byte & 15 : byte >> 4;
    out[i] = Math.fround(table[c] * absmax[Math.floor(i / blockSize)]);
  }
  return out;
}

/** MatMulBnb4 nodes: B = packed codes of W = B_onnx^T ([N, K] flattened), absmax per block. */
export function bnb4Emitter(type: FourBitType, blockSize: number, doubleQuant: boolean): VariantEmitter {
  return {
    weight(weightName, K, N, ctx): WeightPlan {
      const codes = ctx.fresh(`${weightName}_${type}`);
      const absmax = ctx.fresh(`${weightName}_absmax`);
      return {
        tensors: [
          { name: codes, type: 'uint8', dims: [Math.ceil((N * K) / 2)] },
          { name: absmax, type: 'float', dims: [Math.ceil((N * K) / blockSize)] },
        ],
        produceFrom(w) {
          const q = quantize4bitWeight(w, blockSize, type, doubleQuant);
          return { [codes]: q.packed, [absmax]: q.absmaxForNode };
        },
      };
    },
    nodes(plan, a, y, K, N, mainName) {
      const [codes, absmax] = plan.tensors.map((t) => t.name);
      return [
        {
          opType: 'MatMulBnb4',
          domain: 'com.microsoft',
          inputs: [a, codes, absmax],
          outputs: [y],
          name: mainName,
          attrs: { K, N, block_size: blockSize, quant_type: type === 'nf4' ? 1 : 0 },
        },
      ];
    },
  };
}
