/**
 * Quantize an fp32/fp16 ONNX decoder to the paper's precisions (bitsandbytes NF4 with double
 * quantization, LLM.int8()) and ONNX Runtime's own (MatMulNBits q4/int8, dynamic int8).
 *
 *   const { quantized, skipped, settings } = await quantizeModel('model.onnx', 'nf4', 'out/model_nf4.onnx');
 *
 * The file is written under a temporary name and renamed; a `<out>.data` file appears beside it
 * when the source used external data or the output would exceed 2 GiB.
 */
import { promises as fsp, rmSync } from 'node:fs';
import path from 'node:path';
import { removeStaleTemporaries, syncPath, tempPathFor, writeAtomically } from '../../core/atomic-write.ts';
import { QuantlensError } from '../../core/errors.ts';
import { defaultOpset, readOnnxModel, type OnnxModel } from '../model-reader.ts';
import { refusePartial, refuseRequantize, summariseLinear, type QuantizationRecord } from './census.ts';
import { bnb4Emitter } from './nf4.ts';
import { dynamicInt8Emitter } from './dynamic-int8.ts';
import { llmInt8Emitter } from './llm-int8.ts';
import { nbitsEmitter } from './matmul-nbits.ts';
import { rewriteModel } from './rewrite.ts';
import { quantSessionConfig } from './session-settings.ts';
import { selectTargets, type QuantTarget } from './targets.ts';
import { variantSettings, type QuantOptions, type QuantVariant, type VariantEmitter } from './variants.ts';

export type { QuantOptions, QuantVariant } from './variants.ts';
export { QUANT_VARIANTS } from './variants.ts';
export { quantSessionConfig } from './session-settings.ts';
export type { QuantizationRecord, LinearWeight } from './census.ts';

export function emitterFor(variant: QuantVariant, s: Record<string, any>): VariantEmitter {
  switch (variant) {
    case 'nf4':
    case 'fp4':
      return bnb4Emitter(variant, s.blockSize, s.doubleQuant);
    case 'q4':
      return nbitsEmitter(4, s.blockSize, s.symmetric);
    case 'int8':
      return nbitsEmitter(8, s.blockSize, s.symmetric);
    case 'llm-int8':
      return llmInt8Emitter(s.outlierThreshold);
    case 'dynamic-int8':
      return dynamicInt8Emitter();
  }
}

export interface QuantizeResult {
  /** Names of the nodes replaced (MatMul, Gemm, Attention). */
  quantized: string[];
  /** Linear weights left in float, with the reason. */
  skipped: string[];
  /** Fraction of linear-layer parameters quantized and every weight kept in float (census.ts). */
  record: QuantizationRecord;
  settings: Record<string, unknown>;
}

/** Ops llm-int8 needs: Round (opset 11); GreaterOrEqual is decomposed below opset 12. */
const MIN_OPSET: Partial<Record<QuantVariant, number>> = { 'llm-int8': 11, 'dynamic-int8': 11 };

export async function quantizeModel(srcOnnx: string, variant: QuantVariant, outOnnx: string, opts: QuantOptions = {}): Promise<QuantizeResult> {
  const settings: Record<string, unknown> = { ...variantSettings(variant, opts), sessionConfig: quantSessionConfig() };
  const m = readOnnxModel(srcOnnx);
  try {
    const { targets, skipped, linear } = selectTargets(m, opts.includeLmHead ?? false);
    refuseRequantize(linear, srcOnnx);
    if (targets.length === 0) {
      const why = skipped.length ? `; skipped: ${skipped.join(', ')}` : '';
      throw new QuantlensError('QUANTIZE', `no quantizable MatMul, Gemm or Attention (2-D constant float weight) found${why}`, srcOnnx);
    }
    refusePartial(linear, srcOnnx, opts.allowPartial ?? false);
    const opset = defaultOpset(m);
    const minOpset = MIN_OPSET[variant] ?? 0;
    if (opset < minOpset) throw new QuantlensError('UNSUPPORTED', `not supported: ${variant} needs ai.onnx opset >= ${minOpset} (Round, DynamicQuantizeLinear), the model has ${opset}`, srcOnnx);
    const emitter = emitterFor(variant, settings);
    // A killed quantize (CLI or quantize-on-first-use) leaves .model_<variant>.onnx.tmp-* behind.
    removeStaleTemporaries(path.dirname(outOnnx));
    const result = await writeRewritten(m, targets, emitter, outOnnx, opts.onProgress);
    const record = summariseLinear(linear);
    settings.source = path.basename(srcOnnx);
    settings.quantizedCount = result.quantized.length;
    settings.record = record;
    return { quantized: result.quantized, skipped, record, settings };
  } finally {
    m.source.close();
  }
}

/** The rewrite under temporary names; the data file takes its final name before the model does. */
async function writeRewritten(m: OnnxModel, targets: QuantTarget[], emitter: VariantEmitter, outOnnx: string, onProgress?: (done: number, total: number) => void): Promise<{ quantized: string[] }> {
  const dataFinal = `${outOnnx}.data`;
  let dataTmp: string | null = null;
  let dataRenamed = false;
  try {
    return await writeAtomically(outOnnx, async (tmpOnnx) => {
      const r = rewriteModel({ model: m, targets, emitter }, { tmpOnnx, finalOnnx: outOnnx, openData: () => (dataTmp = tempPathFor(dataFinal)), onProgress });
      // The data file takes its final name first, so a model under its final name is always complete.
      if (dataTmp) {
        // Durable before it is named: the model that refers to it is fsynced and renamed after.
        await syncPath(dataTmp);
        await fsp.rename(dataTmp, dataFinal);
        dataRenamed = true;
      }
      return r;
    });
  } catch (e) {
    if (dataTmp) rmSync(dataTmp, { force: true });
    if (dataRenamed) rmSync(dataFinal, { force: true });
    if (e instanceof QuantlensError) throw e;
    throw new QuantlensError('IO', `cannot write ${path.basename(outOnnx)}: ${(e as Error).message.split('\n')[0]}`, outOnnx, { cause: e });
  }
}
