/**
 * Which file runs a pipeline `precisions:` entry:
 *  - fp32 → the original model;
 *  - a prebuilt variant in the model folder (transformers.js names: onnx/model_q4.onnx,
 *    model_bnb4.onnx, model_int8.onnx, model_quantized.onnx, or model_<variant>.onnx), used only
 *    when its graph really holds that quantization (op types, bits, block size, quant type) and
 *    none of the float-activation traps (MatMulNBits accuracy_level >= 2, g_idx);
 *  - otherwise quantized on first use into cacheDir/<sha256(source model + settings)>/model_<variant>.onnx
 *    with its settings in settings.json beside it; later calls return the cached file.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomically } from '../../core/atomic-write.ts';
import { QuantlensError } from '../../core/errors.ts';
import { readOnnxModel, type NodeInfo } from '../../onnx/model-reader.ts';
import { externalDataBeside } from './folder.ts';
import { modelHashOnce } from './hash.ts';
import { quantizeModel } from '../../onnx/quantize/index.ts';
import { refusePartial, type QuantizationRecord } from '../../onnx/quantize/census.ts';
import { readGraphQuantization } from '../../onnx/quantize/graph-settings.ts';
import { quantSessionConfig } from '../../onnx/quantize/session-settings.ts';
import { QUANT_VARIANTS, variantSettings, type QuantOptions, type QuantVariant } from '../../onnx/quantize/variants.ts';

export interface ResolvedPrecision {
  path: string;
  source: 'original' | 'prebuilt' | 'cache' | 'quantized' | 'model-path';
  settings: Record<string, unknown>;
}

const PREBUILT_NAMES: Record<QuantVariant, string[]> = {
  q4: ['model_q4.onnx'],
  nf4: ['model_bnb4.onnx', 'model_nf4.onnx'],
  fp4: ['model_bnb4.onnx', 'model_fp4.onnx'],
  'dynamic-int8': ['model_int8.onnx', 'model_quantized.onnx', 'model_dynamic-int8.onnx'],
  int8: ['model_int8.onnx', 'model_q8.onnx'],
  'llm-int8': [],
};

const intAttr = (n: NodeInfo, k: string, dflt: number) => {
  const a = n.attributes[k];
  return a?.type === 'int' ? a.value : dflt;
};

/** Why a prebuilt file does not hold `variant` with these settings, or null when it does. */
export function prebuiltMismatch(file: string, variant: QuantVariant, s: Record<string, any>): string | null {
  let nodes: NodeInfo[];
  try {
    const m = readOnnxModel(file);
    nodes = m.nodes;
    m.source.close();
  } catch (e) {
    return (e as Error).message;
  }
  const nbits = nodes.filter((n) => n.opType === 'MatMulNBits');
  const bnb4 = nodes.filter((n) => n.opType === 'MatMulBnb4');
  const integer = nodes.filter((n) => ['MatMulInteger', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat'].includes(n.opType));
  for (const n of nbits) {
    if (intAttr(n, 'accuracy_level', 0) >= 2) return `MatMulNBits ${n.name} has accuracy_level ${intAttr(n, 'accuracy_level', 0)} (activations rounded below float32)`;
    if (n.inputs[4]) return `MatMulNBits ${n.name} has g_idx (zero points would be ignored)`;
  }
  if (variant === 'q4' || variant === 'int8') {
    const bits = variant === 'q4' ? 4 : 8;
    if (!nbits.length) return 'no MatMulNBits nodes';
    for (const n of nbits) {
      if (intAttr(n, 'bits', 4) !== bits) return `MatMulNBits ${n.name} has bits ${intAttr(n, 'bits', 4)}, not ${bits}`;
      if (intAttr(n, 'block_size', 0) !== s.blockSize) return `MatMulNBits ${n.name} has block_size ${intAttr(n, 'block_size', 0)}, not ${s.blockSize}`;
      if (Boolean(n.inputs[3]) === s.symmetric) return `MatMulNBits ${n.name} is ${n.inputs[3] ? 'asymmetric' : 'symmetric'}`;
    }
    return null;
  }
  if (variant === 'nf4' || variant === 'fp4') {
    if (!bnb4.length) return 'no MatMulBnb4 nodes';
    for (const n of bnb4) {
      if (intAttr(n, 'quant_type', -1) !== (variant === 'nf4' ? 1 : 0)) return `MatMulBnb4 ${n.name} has quant_type ${intAttr(n, 'quant_type', -1)}`;
      if (intAttr(n, 'block_size', 0) !== s.blockSize) return `MatMulBnb4 ${n.name} has block_size ${intAttr(n, 'block_size', 0)}, not ${s.blockSize}`;
    }
    return null;
  }
  if (variant === 'dynamic-int8') return integer.length && !nbits.length && !bnb4.length ? null : 'no MatMulInteger / DynamicQuantizeMatMul nodes';
  return 'never prebuilt';
}

export async function resolvePrecision(
  modelDir: string,
  onnxPath: string,
  precision: string,
  cacheDir: string,
  opts: QuantOptions = {},
): Promise<ResolvedPrecision> {
  if (precision === 'fp32') return { path: onnxPath, source: 'original', settings: { variant: 'fp32' } };
  if (!(QUANT_VARIANTS as readonly string[]).includes(precision))
    throw new QuantlensError('CONFIG', `unknown precision "${precision}" (use fp32, ${QUANT_VARIANTS.join(', ')})`);
  const variant = precision as QuantVariant;
  const settings: Record<string, unknown> = { ...variantSettings(variant, opts), sessionConfig: quantSessionConfig() };

  const rejected: string[] = [];
  for (const dir of [path.join(modelDir, 'onnx'), modelDir]) {
    for (const name of PREBUILT_NAMES[variant]) {
      const file = path.join(dir, name);
      if (!existsSync(file) || path.resolve(file) === path.resolve(onnxPath)) continue;
      const why = prebuiltMismatch(file, variant, settings);
      if (why === null) {
        const extra = variant === 'nf4' || variant === 'fp4' ? { doubleQuant: 'unknown (prebuilt file stores dequantized absmax)' } : {};
        const fromGraph = graphSettings(file, opts.allowPartial ?? false);
        return { path: file, source: 'prebuilt', settings: { ...settings, ...extra, prebuilt: path.relative(modelDir, file), ...fromGraph } };
      }
      rejected.push(`${path.relative(modelDir, file)}: ${why}`);
    }
  }
  if (rejected.length) settings.prebuiltRejected = rejected;

  const sourceSha256 = await modelHashOnce({ onnxPath, externalData: externalDataBeside(onnxPath) });
  const keyed = { ...settings };
  delete keyed.prebuiltRejected;
  const key = createHash('sha256').update(sourceSha256).update(JSON.stringify(keyed, Object.keys(keyed).sort())).digest('hex');
  const dir = path.join(cacheDir, key);
  const out = path.join(dir, `model_${variant}.onnx`);
  const meta = path.join(dir, 'settings.json');
  if (existsSync(out) && existsSync(meta)) {
    let cached: Record<string, unknown> | null = null;
    try {
      cached = JSON.parse(readFileSync(meta, 'utf8'));
    } catch {
      // unreadable settings: quantize again below
    }
    // Entries cached before the linear-layer census existed have no record: quantize them again.
    if (cached?.record) {
      // A partial variant cached under allow_partial is still refused without it.
      refuseCachedPartial(cached.record as QuantizationRecord | undefined, onnxPath, opts.allowPartial ?? false);
      return { path: out, source: 'cache', settings: cached };
    }
  }
  const r = await quantizeModel(onnxPath, variant, out, opts);
  const recorded = { ...settings, ...r.settings, sourceSha256, cacheKey: key, quantized: r.quantized, skipped: r.skipped };
  await writeFileAtomically(meta, JSON.stringify(recorded, null, 2));
  return { path: out, source: 'quantized', settings: recorded };
}

/** Settings a file's graph holds (formats, census record); refuses a partially quantized file unless allowed. */
export function graphSettings(file: string, allowPartial: boolean): Record<string, unknown> {
  const m = readOnnxModel(file);
  try {
    const g = readGraphQuantization(m);
    // A float file (fp16 export, a float sibling) is not a quantized precision: nothing to refuse.
    if (g.linear.some((w) => w.status === 'prequantized')) refusePartial(g.linear, file, allowPartial);
    return { formats: g.formats, weightDtype: g.weightDtype, record: g.record };
  } finally {
    m.source.close();
  }
}

function refuseCachedPartial(record: QuantizationRecord | undefined, where: string, allowPartial: boolean): void {
  const f = record?.kept_float?.filter((k) => !k.lm_head) ?? [];
  if (!f.length || allowPartial) return;
  refusePartial(f.map((k) => ({ node: k.node, op: '', weight: k.weight, params: k.params, lmHead: false, status: 'float', reason: k.reason })), where, false);
}

/**
 * A file used as it is, as a precision: a prebuilt variant (`model_<tag>` in the folder) or a
 * precision's own model path. Its settings are read from its graph, never from its name.
 */
export function resolveFilePrecision(modelDir: string, file: string, label: string, opts: QuantOptions = {}): ResolvedPrecision {
  if (!existsSync(file)) throw new QuantlensError('CONFIG', `precision ${label}: model file not found: ${file}`, 'precisions');
  const fromGraph = graphSettings(file, opts.allowPartial ?? false);
  return { path: file, source: 'prebuilt', settings: { variant: label, prebuilt: path.relative(modelDir, file), ...fromGraph, sessionConfig: quantSessionConfig() } };
}
