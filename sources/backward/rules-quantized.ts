/**
 * Quantized matmuls (com.microsoft). Straight-through convention: the gradient with respect to
 * the activation uses the dequantized weight; the weight itself never gets a gradient.
 * Not implemented yet: listed here so the error names the op instead of "no rule".
 */
import { QuantlensError } from '../errors.ts';
import type { GradRule } from './rule.ts';

const notYet: GradRule = (c) => {
  throw new QuantlensError('GRADIENT', `no gradient rule for ${c.node.opType} (node ${c.node.name}): the straight-through rule for quantized matmuls is not implemented yet`);
};

export const QUANTIZED_RULES: Record<string, GradRule> = {
  'com.microsoft:MatMulNBits': notYet,
  'com.microsoft:MatMulBnb4': notYet,
  'com.microsoft:MatMulInteger16': notYet,
};
