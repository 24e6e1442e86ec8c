/** Every gradient rule, keyed by op type (`domain:OpType` outside the default domain). */
import { ACTIVATION_RULES } from './rules-activation.ts';
import { ELEMENTWISE_RULES } from './rules-elementwise.ts';
import { MATMUL_RULES } from './rules-matmul.ts';
import { NORM_RULES } from './rules-norm.ts';
import { QUANTIZED_RULES } from './rules-quantized.ts';
import { REDUCE_RULES } from './rules-reduce.ts';
import { SHAPE_RULES } from './rules-shape.ts';
import type { GradRule } from './rule.ts';

export const GRADIENT_RULES: Record<string, GradRule> = {
  ...ELEMENTWISE_RULES,
  ...ACTIVATION_RULES,
  ...MATMUL_RULES,
  ...REDUCE_RULES,
  ...SHAPE_RULES,
  ...NORM_RULES,
  ...QUANTIZED_RULES,
};

export function ruleKey(opType: string, domain: string): string {
  return domain && domain !== 'ai.onnx' ? `${domain}:${opType}` : opType;
}

export function ruleFor(opType: string, domain: string): GradRule | undefined {
  const key = ruleKey(opType, domain);
  return Object.hasOwn(GRADIENT_RULES, key) ? GRADIENT_RULES[key] : undefined;
}
