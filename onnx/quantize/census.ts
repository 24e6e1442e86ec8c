/**
 * The linear-layer census of a graph: every linear weight, its size, and whether it is quantized,
 * already quantized in the file, or kept in float (with the reason). Its summary is the
 * quantization record written to summary.json and every output's metadata, so a partially
 * quantized precision can never pass as a quantized one.
 */
import type { NodeInfo, OnnxModel } from '../model-reader.ts';
import { QuantlensError } from '../../core/errors.ts';

export interface LinearWeight {
  /** The node applying the weight (its name, else its first output). */
  node: string;
  op: string;
  weight: string;
  /** K × N: parameters of the linear map (stored codes count as the weights they encode). */
  params: number;
  lmHead: boolean;
  /** quantized: by this rewrite; prequantized: quantized in the file already; float: kept. */
  status: 'quantized' | 'prequantized' | 'float';
  reason?: string;
}

export interface QuantizationRecord {
  linear_weights: number;
  linear_params: number;
  quantized_params: number;
  fraction_quantized: number;
  /** Decoder linear layers: every linear weight but lm_head. */
  decoder_params: number;
  decoder_quantized_params: number;
  decoder_fraction_quantized: number;
  kept_float: { node: string; weight: string; params: number; lm_head: boolean; reason: string }[];
}

const intAttr = (n: NodeInfo, k: string) => {
  const a = n.attributes[k];
  return a?.type === 'int' ? a.value : 0;
};

function constDims(m: OnnxModel, name: string | undefined): number[] | null {
  if (!name) return null;
  const t = m.initializers.get(name);
  if (t) return t.dims;
  const c = m.nodes.find((n) => n.opType === 'Constant' && n.outputs[0] === name)?.attributes.value;
  return c?.type === 'tensor' ? c.value.dims : null;
}

const product = (d: number[]) => d.reduce((a, b) => a * b, 1);

/** A node whose weight is quantized in the file itself: its size and how, or null. */
export function alreadyQuantized(m: OnnxModel, node: NodeInfo): { params: number; how: string } | null {
  const ms = node.domain === 'com.microsoft';
  if (ms && node.opType === 'MatMulNBits') return { params: intAttr(node, 'K') * intAttr(node, 'N'), how: `MatMulNBits ${intAttr(node, 'bits') || 4}-bit` };
  if (ms && node.opType === 'MatMulBnb4') return { params: intAttr(node, 'K') * intAttr(node, 'N'), how: `MatMulBnb4 ${intAttr(node, 'quant_type') === 1 ? 'nf4' : 'fp4'}` };
  const bIndex = node.opType === 'QLinearMatMul' ? 3 : ['MatMulInteger', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat'].includes(node.opType) ? 1 : -1;
  if (bIndex < 0 || (node.domain !== '' && !ms)) return null;
  const dims = constDims(m, node.inputs[bIndex]);
  return dims && dims.length === 2 ? { params: product(dims), how: node.opType } : null;
}

export function summariseLinear(linear: LinearWeight[]): QuantizationRecord {
  const sum = (ws: LinearWeight[]) => ws.reduce((s, w) => s + w.params, 0);
  const isQ = (w: LinearWeight) => w.status !== 'float';
  const decoder = linear.filter((w) => !w.lmHead);
  const lp = sum(linear);
  const dp = sum(decoder);
  return {
    linear_weights: linear.length,
    linear_params: lp,
    quantized_params: sum(linear.filter(isQ)),
    fraction_quantized: lp ? sum(linear.filter(isQ)) / lp : 0,
    decoder_params: dp,
    decoder_quantized_params: sum(decoder.filter(isQ)),
    decoder_fraction_quantized: dp ? sum(decoder.filter(isQ)) / dp : 0,
    kept_float: linear.filter((w) => !isQ(w)).map((w) => ({ node: w.node, weight: w.weight, params: w.params, lm_head: w.lmHead, reason: w.reason ?? 'float' })),
  };
}

/** One line naming the first decoder linear weight left in float, unless partial results are allowed. */
export function refusePartial(linear: LinearWeight[], where: string, allowPartial: boolean): void {
  if (allowPartial) return;
  const float = linear.filter((w) => !w.lmHead && w.status === 'float');
  if (!float.length) return;
  const f = float[0];
  const more = float.length > 1 ? ` (and ${float.length - 1} more)` : '';
  throw new QuantlensError(
    'QUANTIZE',
    `decoder linear weight ${f.weight} of node ${f.node} stays in float: ${f.reason ?? 'not quantized'}${more}; set quantization.allow_partial: true to accept a partially quantized model`,
    where,
  );
}

/** One line refusing to quantize weights the file has quantized already. */
export function refuseRequantize(linear: LinearWeight[], where: string): void {
  const pre = linear.filter((w) => w.status === 'prequantized');
  if (!pre.length) return;
  throw new QuantlensError(
    'QUANTIZE',
    `weights are already quantized (${pre.length} nodes, e.g. ${pre[0].node}: ${pre[0].reason}); re-quantizing quantized weights is refused — use the float model and give this one its own precision model path`,
    where,
  );
}
