/** The shape of a decomposition (see decompose.ts): standard ops computing a contrib op's outputs. */
import type { NodeInfo } from '../model-reader.ts';
import type { GradEmitter } from './emitter.ts';

export interface DecomposeContext {
  node: NodeInfo;
  /** Emits the decomposed forward nodes; knows the probe type/shape of every original tensor. */
  e: GradEmitter;
  /** Values of a constant integer tensor (initializer, Constant node or emitted i64), else undefined. */
  constInts(name: string): number[] | undefined;
}

/** Returns, per output of the node, the tensor that equals it (null: not reproduced). */
export type Decomposition = (d: DecomposeContext) => (string | null)[];
