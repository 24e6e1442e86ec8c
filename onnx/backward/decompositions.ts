/** Every decomposition, keyed as the rules are (`domain:OpType` outside the default domain). */
import { ATTENTION_DECOMPOSITIONS } from './decompose-attention.ts';
import { GELU_DECOMPOSITIONS } from './decompose-gelu.ts';
import { GQA_DECOMPOSITIONS } from './decompose-gqa.ts';
import { MATMUL_DECOMPOSITIONS } from './decompose-matmul.ts';
import { ONNX_ATTENTION_DECOMPOSITIONS } from './decompose-onnx-attention.ts';
import { EMBED_DECOMPOSITIONS, NORM_DECOMPOSITIONS } from './decompose-norm.ts';
import { ROTARY_DECOMPOSITIONS } from './decompose-rotary.ts';
import type { Decomposition } from './decomposition.ts';

export const DECOMPOSITIONS: Record<string, Decomposition> = {
  ...GELU_DECOMPOSITIONS,
  ...ATTENTION_DECOMPOSITIONS,
  ...GQA_DECOMPOSITIONS,
  ...MATMUL_DECOMPOSITIONS,
  ...ONNX_ATTENTION_DECOMPOSITIONS,
  ...ROTARY_DECOMPOSITIONS,
  ...NORM_DECOMPOSITIONS,
  ...EMBED_DECOMPOSITIONS,
};
