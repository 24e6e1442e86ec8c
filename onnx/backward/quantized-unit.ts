/**
 * A quantized linear layer seen as one unit of the reverse sweep: what quantized-patterns.ts finds
 * in a graph and rules-quantized.ts differentiates (straight-through). Its own file so that the
 * finder and the rule both depend on it rather than on each other.
 */
import type { NodeInfo } from '../model-reader.ts';
import type { GradEmitter } from './emitter.ts';
import type { Gate } from './dequantize-graph.ts';

export type QuantizedUnitKind = 'MatMulNBits' | 'MatMulBnb4' | 'llm-int8' | 'dynamic-int8';

export interface QuantizedUnit {
  kind: QuantizedUnitKind;
  /** The float activation x (the unit's only differentiable input). */
  input: string;
  /** The unit's float output y. */
  output: string;
  K: number;
  N: number;
  /** The unit's own forward nodes (the last one produces `output`). */
  members: NodeInfo[];
  /** Nodes the unit shares with other units (a DynamicQuantizeLinear feeding several). */
  shared: NodeInfo[];
  /**
   * Ŵ [K, N] row-major: what ORT multiplies x by (llm-int8: the outlier-path weight), dequantized
   * in JS: the reference the tests hold emitWeightT's graph to. Computed only when called (no rule
   * calls it), so finding a model's units dequantizes nothing.
   */
  weight(): Float32Array;
  /** Nodes computing Ŵᵀ [N, K] float32 in the graph from the stored tensors read through `gate` (dequantize-graph.ts). */
  emitWeightT(e: GradEmitter, gate: Gate): string;
  /** llm-int8: the forward [K] bool tensor of outlier columns, and the int8 path's factor. */
  outliers?: { columns: string; int8Factor: number };
}
