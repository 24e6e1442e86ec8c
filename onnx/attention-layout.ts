/**
 * What a model's attention implementation needs from its feeds: the padding side, and values for
 * past-cache dims the graph leaves symbolic.
 *
 * com.microsoft GroupQueryAttention (onnxruntime-genai exports) derives each row's length from the
 * attention mask (seqlens_k = Σmask − 1) and places the row's tokens at positions 0..len−1, rotary
 * included: it assumes real tokens first. Left-padded rows would be read as their first len
 * columns (pads) and rotated at the wrong positions, so such models get right padding. Every other
 * attention we know (decomposed MatMul/Softmax with an additive mask, MultiHeadAttention, Attention
 * with mask_index) honours the mask wherever the pads are, and keeps left padding.
 */
import type { OnnxModel } from './model-reader.ts';
import { constantDims, indexGraph } from './graph-index.ts';
import type { PadSide, PastHints } from './feeds.ts';

/** Ops whose kernels take each row's tokens to start at column 0. */
const REAL_TOKENS_FIRST = new Set(['GroupQueryAttention', 'SparseAttention', 'PagedAttention']);

export function paddingSideFor(m: OnnxModel): { side: PadSide; why: string } {
  const n = m.nodes.find((x) => x.domain === 'com.microsoft' && REAL_TOKENS_FIRST.has(x.opType));
  if (n) return { side: 'right', why: `${n.opType} (node ${n.name}) reads each row's real tokens from column 0` };
  return { side: 'left', why: 'attention honours the mask wherever the pads are' };
}

const posInt = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined);

/**
 * kv heads and head size for [batch, kv_heads, past, head] caches: genai_config.json's
 * model.decoder, else a Hugging Face config, else the graph's GroupQueryAttention (kv_num_heads,
 * and the head size from its packed-qkv projection width).
 */
export function pastHintsFor(m: OnnxModel, config?: Record<string, any> | null, genai?: Record<string, any> | null): PastHints {
  const d = genai?.model?.decoder;
  const heads = posInt(d?.num_attention_heads) ?? posInt(config?.num_attention_heads);
  let kvHeads = posInt(d?.num_key_value_heads) ?? posInt(config?.num_key_value_heads) ?? (config ? heads : undefined);
  let headSize = posInt(d?.head_size) ?? posInt(config?.head_dim) ?? (heads && posInt(config?.hidden_size) ? config!.hidden_size / heads : undefined);
  const gqa = m.nodes.find((x) => x.opType === 'GroupQueryAttention');
  if (gqa && (!kvHeads || !headSize)) {
    const g = indexGraph(m);
    const nh = gqa.attributes.num_heads?.type === 'int' ? gqa.attributes.num_heads.value : undefined;
    const kv = gqa.attributes.kv_num_heads?.type === 'int' ? gqa.attributes.kv_num_heads.value : undefined;
    kvHeads ??= kv;
    const qkv = g.producer.get(gqa.inputs[0]);
    const packed = !gqa.inputs[1];
    const width = qkv?.attributes.N?.type === 'int' ? qkv.attributes.N.value : qkv ? constantDims(g, qkv.inputs[1])?.[1] : undefined;
    if (!headSize && nh && kv && width) headSize = width / (packed ? nh + 2 * kv : nh);
  }
  return { kvHeads, headSize: headSize && Number.isInteger(headSize) ? headSize : undefined };
}
