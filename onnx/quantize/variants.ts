/**
 * The quantization variants quantlens writes, their options, and the contract between a variant
 * (what to compute) and the streaming rewriter (how bytes reach the file).
 *
 * A variant works per weight (one constant B of a MatMul) and per MatMul node:
 *  - `weight(name, K, N)` declares the new initializers (names, types, dims) BEFORE any data is
 *    computed, so the rewriter can size the graph message up front and stream; `produce(B)` (or
 *    `produceFrom(w)`, the weight in its stored layout) then quantizes one weight into those tensors.
 *  - `nodes(...)` returns the nodes replacing one MatMul, reading activation `a` and writing `y`.
 */
import type { AttrInput, TypedData } from '../builder.ts';
import type { DTypeName } from '../dtypes.ts';
import { QuantlensError } from '../../core/errors.ts';
import type { SourceWeight } from './weight-source.ts';

export type QuantVariant = 'nf4' | 'fp4' | 'llm-int8' | 'q4' | 'int8' | 'dynamic-int8';
export const QUANT_VARIANTS: readonly QuantVariant[] = ['nf4', 'fp4', 'llm-int8', 'q4', 'int8', 'dynamic-int8'];

export interface QuantOptions {
  /** nf4/fp4: bnb block (default 64); q4/int8: MatMulNBits block along K (default 32). */
  blockSize?: number;
  /** nf4/fp4: double-quantize absmax (default true, as the paper's bnb config). */
  doubleQuant?: boolean;
  /** q4/int8: symmetric without zero points (default true, as transformers.js model_q4). */
  symmetric?: boolean;
  /** llm-int8: outlier threshold on |x| (default 6.0, bnb's llm_int8_threshold). */
  outlierThreshold?: number;
  /** Quantize the lm_head MatMul too (default false: it stays float, as bnb's skip list). */
  includeLmHead?: boolean;
  /** Accept a model whose decoder linear weights are not all quantized (default false: refused). */
  allowPartial?: boolean;
  /** Called with (weights done, weights in all) as the rewrite quantizes them (a progress line; not a setting). */
  onProgress?: (done: number, total: number) => void;
}

export interface NewTensor {
  name: string;
  type: DTypeName;
  dims: number[];
}

export interface NodeSpec {
  opType: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, AttrInput>;
  name?: string;
  domain?: string;
}

/** A weight's new tensors and how their data is computed: exactly one of the two forms below. */
export type WeightPlan = { tensors: NewTensor[] } & (ProducesFromB | ProducesFromSource);

export interface ProducesFromB {
  /** Quantize B ([K, N] row-major float32, as ONNX MatMul's B) into data for every declared tensor, by name. */
  produce(b: Float32Array): Record<string, TypedData>;
}

export interface ProducesFromSource {
  /**
   * The same from the weight in the layout it is stored in (weight-source.ts), so a variant that
   * works on rows of Bᵀ never transposes a whole copy.
   */
  produceFrom(w: SourceWeight): Record<string, TypedData>;
}

export interface VariantContext {
  /** ai.onnx opset of the model (ReduceMax takes axes as an input from 18 on). */
  opset: number;
  /** A name not yet used in the graph, derived from `base`. */
  fresh(base: string): string;
}

export interface VariantEmitter {
  weight(weightName: string, K: number, N: number, ctx: VariantContext): WeightPlan;
  /** Nodes computing y = a @ dequant(B) (a, y float32). `mainName` names the node producing y. */
  nodes(plan: WeightPlan, a: string, y: string, K: number, N: number, mainName: string, ctx: VariantContext): NodeSpec[];
}

export const BLOCK_SIZES = [16, 32, 64, 128, 256];

export function checkBlockSize(bs: number): number {
  if (!BLOCK_SIZES.includes(bs)) throw new QuantlensError('QUANTIZE', `unsupported block size ${bs} (use 16, 32, 64, 128 or 256)`);
  return bs;
}

/** Resolved settings of a variant: recorded next to results and hashed into the cache key. */
export function variantSettings(variant: QuantVariant, opts: QuantOptions = {}): Record<string, unknown> {
  const common = { variant, includeLmHead: opts.includeLmHead ?? false, computeDtype: 'float32' };
  switch (variant) {
    case 'nf4':
    case 'fp4':
      return {
        ...common,
        op: 'com.microsoft.MatMulBnb4',
        quantType: variant,
        blockSize: checkBlockSize(opts.blockSize ?? 64),
        doubleQuant: opts.doubleQuant ?? true,
        doubleQuantBlockSize: 256,
        doubleQuantMap: 'bnb dynamic 8-bit (signed), mean offset',
      };
    case 'llm-int8': {
      const t = opts.outlierThreshold ?? 6.0;
      if (!(t > 0) || !Number.isFinite(t)) throw new QuantlensError('QUANTIZE', `outlierThreshold must be a positive number, got ${t}`);
      return { ...common, op: 'MatMulInteger + float outlier MatMul (LLM.int8 emulation)', outlierThreshold: t, weightQuant: 'int8 absmax per output row', activationQuant: 'int8 absmax per token', rounding: 'half to even' };
    }
    case 'q4':
    case 'int8':
      return {
        ...common,
        op: 'com.microsoft.MatMulNBits',
        bits: variant === 'q4' ? 4 : 8,
        blockSize: checkBlockSize(opts.blockSize ?? 32),
        symmetric: opts.symmetric ?? true,
        accuracyLevel: 0,
      };
    case 'dynamic-int8':
      return { ...common, op: 'DynamicQuantizeLinear + MatMulInteger', weightQuant: 'int8 symmetric per tensor', activationQuant: 'uint8 asymmetric per tensor (dynamic)' };
    default:
      throw new QuantlensError('QUANTIZE', `unknown quantization variant "${variant as string}" (use ${QUANT_VARIANTS.join(', ')})`);
  }
}

/**
 * x + ROUND_EVEN − ROUND_EVEN rounds a float64 |x| < 2⁵¹ to an integer, half to even as
 * torch.round, numpy.round and ONNX Round do (IEEE round-to-nearest-even on the add), without a
 * call or a branch, for bulk loops.
 */
export const ROUND_EVEN = 6755399441055744;

/** Round half away from zero (C roundf, used by MLAS block quantizers). */
export function roundHalfAway(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

