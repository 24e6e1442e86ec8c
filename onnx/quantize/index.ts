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
import { tempPathFor, writeAtomically } from '../../core/atomic-write.ts';
import { QuantlensError } from '../../core/errors.ts';
import { readOnnxModel } from '../model-reader.ts';
import { bnb4Emitter } from './nf4.ts';
import { dynamicInt8Emitter } from './dynamic-int8.ts';
import { llmInt8Emitter } from './llm-int8.ts';
import { nbitsEmitter } from './matmul-nbits.ts';
import { rewriteModel } from './rewrite.ts';
import { quantSessionConfig } from './session-settings.ts';
import { selectTargets } from './targets.ts';
import { variantSettings, type QuantOptions, type QuantVariant, type VariantEmitter } from './variants.ts';

export type { QuantOptions, QuantVariant } from './variants.ts';
export { QUANT_VARIANTS } from './variants.ts';
export { quantSessionConfig } from './session-settings.ts';

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
  /** Names of the MatMul nodes replaced. */
  quantized: string[];
  /** Constant-weight MatMuls left in float, with the reason. */
  skipped: string[];
  settings: Record<string, unknown>;
}

export async function quantizeModel(srcOnnx: string, variant: QuantVariant, outOnnx: string, opts: QuantOptions = {}): Promise<QuantizeResult> {
  const settings: Record<string, unknown> = { ...variantSettings(variant, opts), sessionConfig: quantSessionConfig() };
  const m = readOnnxModel(srcOnnx);
  try {
    const { targets, skipped } = selectTargets(m, opts.includeLmHead ?? false);
    if (targets.length === 0) {
      const why = skipped.length ? `; skipped: ${skipped.join(', ')}` : '';
      throw new QuantlensError('QUANTIZE', `no quantizable MatMul (2-D constant float weight) found${why}`, srcOnnx);
    }
    const opset = m.opsets.find((o) => o.domain === '')?.version ?? 0;
    if ((variant === 'llm-int8' || variant === 'dynamic-int8') && opset < 13)
      throw new QuantlensError('UNSUPPORTED', `${variant} needs ai.onnx opset >= 13, the model has ${opset}`, srcOnnx);
    const emitter = emitterFor(variant, settings);
    const dataFinal = `${outOnnx}.data`;
    let dataTmp: string | null = null;
    let dataRenamed = false;
    let result: { quantized: string[] };
    try {
      result = await writeAtomically(outOnnx, async (tmpOnnx) => {
        const r = rewriteModel({ model: m, targets, emitter }, { tmpOnnx, finalOnnx: outOnnx, openData: () => (dataTmp = tempPathFor(dataFinal)) });
        // The data file takes its final name first, so a model under its final name is always complete.
        if (dataTmp) {
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
    settings.source = path.basename(srcOnnx);
    settings.quantizedCount = result.quantized.length;
    return { quantized: result.quantized, skipped, settings };
  } finally {
    m.source.close();
  }
}
