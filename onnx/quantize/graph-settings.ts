/**
 * What quantization a graph already holds, read from the graph itself (prebuilt transformers.js
 * variants, onnxruntime-genai int4 builds, a precision's own model path): the distinct formats of
 * its quantized nodes and the linear-layer census of the file. Nothing is assumed from a file name.
 *  - com.microsoft MatMulNBits: bits, block_size, zero points (none = symmetric 2^(bits-1)),
 *    accuracy_level (>= 2 lets ORT round activations to int8), g_idx;
 *  - com.microsoft MatMulBnb4: quant_type (0 fp4, 1 nf4), block_size;
 *  - dynamic quantization: MatMulInteger (or DynamicQuantizeMatMul) with constant int8/uint8
 *    weights, per-tensor or per-column zero point, activations from DynamicQuantizeLinear.
 */
import type { NodeInfo, OnnxModel } from '../model-reader.ts';
import { DTYPE } from '../dtypes.ts';
import { summariseLinear, type LinearWeight, type QuantizationRecord } from './census.ts';
import { selectTargets } from './targets.ts';

export interface GraphQuantization {
  /** Distinct quantization formats of the graph's quantized nodes (empty for a float graph). */
  formats: Record<string, unknown>[];
  /** Float type of the graph's float weights. */
  weightDtype: 'float32' | 'float16' | 'none';
  linear: LinearWeight[];
  record: QuantizationRecord;
}

const intAttr = (n: NodeInfo, k: string, dflt: number) => {
  const a = n.attributes[k];
  return a?.type === 'int' ? a.value : dflt;
};

function dtypeName(t: number): string {
  return Object.entries(DTYPE).find(([, v]) => v === t)?.[0] ?? `type ${t}`;
}

function constInfo(m: OnnxModel, name: string | undefined) {
  if (!name) return undefined;
  const t = m.initializers.get(name);
  if (t) return t;
  const c = m.nodes.find((n) => n.opType === 'Constant' && n.outputs[0] === name)?.attributes.value;
  return c?.type === 'tensor' ? c.value : undefined;
}

function formatOf(m: OnnxModel, n: NodeInfo, producers: Map<string, NodeInfo>): Record<string, unknown> | null {
  if (n.domain === 'com.microsoft' && n.opType === 'MatMulNBits') {
    const zp = n.inputs[3] ? constInfo(m, n.inputs[3]) : undefined;
    return {
      op: 'com.microsoft.MatMulNBits',
      bits: intAttr(n, 'bits', 4),
      block_size: intAttr(n, 'block_size', 0),
      zero_points: n.inputs[3] ? `${zp ? dtypeName(zp.dataType) : 'computed'} (asymmetric)` : 'none (symmetric)',
      accuracy_level: intAttr(n, 'accuracy_level', 0),
      g_idx: !!n.inputs[4],
    };
  }
  if (n.domain === 'com.microsoft' && n.opType === 'MatMulBnb4')
    return { op: 'com.microsoft.MatMulBnb4', quant_type: intAttr(n, 'quant_type', -1) === 1 ? 'nf4' : intAttr(n, 'quant_type', -1) === 0 ? 'fp4' : 'unknown', block_size: intAttr(n, 'block_size', 0) };
  if (['MatMulInteger', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat'].includes(n.opType)) {
    const w = constInfo(m, n.inputs[1]);
    if (!w) return null;
    const wzpName = n.inputs[n.opType === 'MatMulIntegerToFloat' ? 5 : 3];
    const wzp = constInfo(m, wzpName);
    const a = producers.get(n.inputs[0]);
    return {
      op: n.opType,
      weight_type: dtypeName(w.dataType),
      weight_zero_point: !wzpName ? 'none (0)' : wzp && wzp.dims.reduce((x, y) => x * y, 1) > 1 ? 'per column' : 'per tensor',
      activation: n.opType === 'DynamicQuantizeMatMul' || a?.opType === 'DynamicQuantizeLinear' ? 'uint8 asymmetric per tensor (DynamicQuantizeLinear)' : (a?.opType ?? 'graph input'),
    };
  }
  return null;
}

export function readGraphQuantization(m: OnnxModel): GraphQuantization {
  const producers = new Map<string, NodeInfo>();
  for (const n of m.nodes) for (const o of n.outputs) producers.set(o, n);
  const formats = new Map<string, Record<string, unknown>>();
  for (const n of m.nodes) {
    const f = formatOf(m, n, producers);
    if (f) formats.set(JSON.stringify(f), f);
  }
  // A float linear weight in this file is one the file does not quantize.
  const linear = selectTargets(m, true).linear.map((w): LinearWeight =>
    w.status === 'quantized' ? { ...w, status: 'float', reason: w.lmHead ? 'lm_head, float in this file' : 'float in this file' } : w,
  );
  let weightDtype: GraphQuantization['weightDtype'] = 'none';
  for (const t of m.initializers.values()) {
    if (t.dims.length !== 2) continue;
    if (t.dataType === DTYPE.float16) weightDtype = 'float16';
    else if (t.dataType === DTYPE.float && weightDtype === 'none') weightDtype = 'float32';
  }
  return { formats: [...formats.values()], weightDtype, linear, record: summariseLinear(linear) };
}
