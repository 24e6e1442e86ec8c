/**
 * The nodes that replace one linear layer (targets.ts) in the rewritten graph, encoded as graph
 * `node` fields written where the original node was (topological order kept):
 *  - MatMul: the variant's nodes, x → y;
 *  - Gemm: the variant's nodes, then Add(bias) when Gemm has a C (only alpha = beta = 1 is a target);
 *  - com.microsoft Attention: the fused qkv projection is quantized in front of the op, and the
 *    Attention node itself is kept byte for byte except its inputs: x becomes the quantized qkv and
 *    its weight becomes an identity [3H, 3H] (shared per width). ORT's Attention then adds the bias
 *    and attends exactly as before: a float product with an identity is exact.
 * fp16 models: quantized ops run in float32 (bnb/ORT arithmetic on float), so the activation is
 * cast to float32 in front and the product back to float16 behind.
 */
import { encodeNode } from '../builder.ts';
import { DTYPE } from '../dtypes.ts';
import type { ByteSource } from '../model-reader.ts';
import { fields, ProtoWriter } from '../wire.ts';
import type { PlanEntry } from './rewrite-pieces.ts';
import type { QuantTarget } from './targets.ts';
import type { NodeSpec, VariantContext, VariantEmitter } from './variants.ts';

export interface Replacement {
  /** Encoded graph `node` fields (field 1), in order. */
  bytes: Uint8Array;
  usesContrib: boolean;
}

/** y = x @ dequant(W) as the variant's nodes, with Casts around them for fp16 models. */
function quantizedProduct(t: QuantTarget, entry: PlanEntry, emitter: VariantEmitter, x: string, y: string, mainName: string, ctx: VariantContext): NodeSpec[] {
  if (t.dtype !== 'float16') return emitter.nodes(entry.plan, x, y, t.K, t.N, mainName, ctx);
  const a32 = ctx.fresh(`${y}/a_float32`);
  const y32 = ctx.fresh(`${y}/y_float32`);
  return [
    { opType: 'Cast', inputs: [x], outputs: [a32], attrs: { to: DTYPE.float }, name: ctx.fresh(`${mainName}/cast_a_float32`) },
    ...emitter.nodes(entry.plan, a32, y32, t.K, t.N, ctx.fresh(`${mainName}/float32`), ctx),
    { opType: 'Cast', inputs: [y32], outputs: [y], attrs: { to: DTYPE.float16 }, name: mainName },
  ];
}

/** The original NodeProto with new inputs: every other field copied verbatim. */
function withInputs(src: ByteSource, range: [number, number], inputs: string[]): Uint8Array {
  const b = src.read(range[0], range[1] - range[0]);
  const w = new ProtoWriter();
  for (const i of inputs) w.string(1, i);
  for (const f of fields(b)) if (f.field !== 1) w.raw(b.subarray(f.fieldStart, f.end));
  return w.finish();
}

export function replacementFor(
  t: QuantTarget,
  entry: PlanEntry,
  emitter: VariantEmitter,
  ctx: VariantContext,
  src: ByteSource,
  /** Attention targets: the identity weight of width N. */
  identityName?: string,
): Replacement {
  const out = t.node.outputs[0];
  const name = t.node.name || ctx.fresh(`${out}/quantized`);
  const w = new ProtoWriter();
  let usesContrib = false;
  const emit = (specs: NodeSpec[]) => {
    for (const s of specs) {
      if (s.domain === 'com.microsoft') usesContrib = true;
      w.message(1, (nw) => encodeNode(nw, s));
    }
  };
  if (t.kind === 'matmul') emit(quantizedProduct(t, entry, emitter, t.activation, out, name, ctx));
  else if (t.kind === 'gemm') {
    if (!t.bias) emit(quantizedProduct(t, entry, emitter, t.activation, out, name, ctx));
    else {
      const y = ctx.fresh(`${out}/before_bias`);
      emit(quantizedProduct(t, entry, emitter, t.activation, y, name, ctx));
      emit([{ opType: 'Add', inputs: [y, t.bias], outputs: [out], name: ctx.fresh(`${name}/bias`) }]);
    }
  } else {
    const qkv = ctx.fresh(`${name}/qkv_quantized`);
    emit(quantizedProduct(t, entry, emitter, t.activation, qkv, ctx.fresh(`${name}/qkv_proj`), ctx));
    const inputs = [qkv, identityName!, ...t.node.inputs.slice(2)];
    w.bytes(1, withInputs(src, t.node.range, inputs));
  }
  return { bytes: w.finish(), usesContrib };
}
