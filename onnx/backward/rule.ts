/**
 * The shape of a gradient rule: given the gradients of a forward node's outputs, emit nodes for
 * the gradients of the inputs that need one. Rules only see forward tensors by name; the forward
 * values are computed by the same model, so rules read them directly.
 */
import { QuantlensError } from '../../core/errors.ts';
import type { NodeInfo } from '../model-reader.ts';
import type { GradEmitter } from './emitter.ts';

export interface RuleContext {
  node: NodeInfo;
  /** Gradient of each output, or null when that output carries none. At least one is non-null. */
  gy: (string | null)[];
  /** needs[i]: input i depends on the override, so its gradient is wanted. */
  needs: boolean[];
  e: GradEmitter;
  /** Values of a constant integer tensor (initializer or Constant node), else undefined. */
  constInts(name: string): number[] | undefined;
}

/** Returns one entry per input: the gradient tensor name, or null (not needed / none). */
export type GradRule = (c: RuleContext) => (string | null)[];

export function gradError(node: NodeInfo, message: string): QuantlensError {
  return new QuantlensError('GRADIENT', `${node.opType} (node ${node.name || node.outputs[0]}): ${message}`);
}

export function attrInt(node: NodeInfo, name: string, def: number): number {
  const a = node.attributes[name];
  return a?.type === 'int' ? a.value : def;
}

export function attrFloat(node: NodeInfo, name: string, def: number): number {
  const a = node.attributes[name];
  return a?.type === 'float' ? a.value : def;
}

export function attrInts(node: NodeInfo, name: string): number[] | undefined {
  const a = node.attributes[name];
  return a?.type === 'ints' ? a.value : undefined;
}

/** The single output gradient of a one-output op (the graph only calls a rule when it exists). */
export function onlyGrad(c: RuleContext): string {
  const g = c.gy[0];
  if (!g) throw gradError(c.node, 'no gradient reached its output');
  return g;
}

/** The input at index i, or undefined when absent ('' marks an omitted optional input). */
export function optionalInput(node: NodeInfo, i: number): string | undefined {
  const v = node.inputs[i];
  return v ? v : undefined;
}

/** ONNX TensorProto element type code for an ORT element type name (for Cast's `to`). */
export function onnxTypeCode(type: string): number {
  const codes: Record<string, number> = { float32: 1, float16: 10, float64: 11, bfloat16: 16 };
  const c = codes[type];
  if (c === undefined) throw new QuantlensError('GRADIENT', `no gradient for element type ${type}`);
  return c;
}
