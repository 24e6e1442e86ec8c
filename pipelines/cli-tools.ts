/**
 * The CLI commands around runs and models: merge, report, inspect, quantize, convert. Every
 * command that writes takes `--output` (alias `--out`) and refuses to replace finished results
 * without `--force`.
 */
import path from 'node:path';
import type { Argv } from 'yargs';
import { QuantlensError } from '../core/errors.ts';
import { checkFilesAbsent, checkFolderEmpty, checkRunOutput } from './output-guard.ts';
import { Progress } from './progress.ts';

type Args = Record<string, any>;

const output = (describe: string) => ({ type: 'string', alias: 'out', requiresArg: true, describe }) as const;
const force = (describe: string) => ({ type: 'boolean', default: false, describe }) as const;

async function mergeCommand(a: Args): Promise<void> {
  const { mergeShards } = await import('./merge.ts');
  const r = await mergeShards(a.dirs as string[], {
    output: a.output ? path.resolve(a.output) : undefined,
    report: a.report,
    beforeWrite: (dir) => void checkRunOutput(dir, { force: a.force }),
  });
  console.log(`results: ${r.outDir}`);
}

async function reportCommand(a: Args): Promise<void> {
  const { writeReport, writeSuiteReport } = await import('../sinks/report/index.ts');
  const { checkOutputComplete } = await import('./output-folder.ts');
  const runs = (a.runs as string[]).map((p) => path.resolve(p));
  for (const d of runs) checkOutputComplete(d);
  const out = a.output ? path.resolve(a.output) : undefined;
  const r = a.suite ? await writeSuiteReport(runs, out ?? path.dirname(runs[0])) : await writeReport(runs, { out });
  console.log(r.html);
}

async function quantizeCommand(a: Args): Promise<void> {
  const { QUANT_VARIANTS, quantizeModel } = await import('../onnx/quantize/index.ts');
  const { openModelFolder } = await import('../sources/model/folder.ts');
  const folder = await openModelFolder(path.resolve(a.model), a.model);
  const variants = String(a.to).split(',').map((v) => v.trim()) as (typeof QUANT_VARIANTS)[number][];
  for (const v of variants)
    if (!(QUANT_VARIANTS as readonly string[]).includes(v)) throw new QuantlensError('USAGE', `unknown variant "${v}" (use ${QUANT_VARIANTS.join(', ')})`, '--to');
  // Only flags the user gave: unset options keep the variant's defaults, as in a pipeline run (same cache key).
  const opts = {
    blockSize: a.blockSize,
    doubleQuant: a.doubleQuant === false ? false : undefined,
    symmetric: a.asymmetric ? false : undefined,
    outlierThreshold: a.outlierThreshold,
    includeLmHead: a.includeLmHead ? true : undefined,
    allowPartial: a.allowPartial ? true : undefined,
  };
  if (a.output === undefined) {
    // Into the cache a pipeline run reads (or the matching prebuilt file, which runs would use).
    const { resolvePrecision } = await import('../sources/model/precision-files.ts');
    const { defaultCacheDir } = await import('./precisions.ts');
    for (const v of variants) {
      const progress = new Progress(null, { phase: `quantization ${v}`, unit: 'weights', ttyOnly: true });
      const r = await resolvePrecision(folder.dir, folder.onnxPath, v, defaultCacheDir(), { ...opts, onProgress: (d, t) => progress.update(d, t) }).catch((e) => {
        progress.done();
        throw e;
      });
      progress.done({ erase: r.source !== 'quantized' });
      console.log(`${v}: ${r.source === 'quantized' ? 'quantized into the cache' : r.source === 'cache' ? 'already in the cache' : 'prebuilt file in the model folder'} → ${r.path}`);
    }
    return;
  }
  const outDir = path.resolve(a.output);
  const files = variants.map((v) => path.join(outDir, `model_${v}.onnx`));
  checkFilesAbsent(files, { force: a.force });
  for (const [k, v] of variants.entries()) {
    const progress = new Progress(null, { phase: `quantization ${v}`, unit: 'weights', ttyOnly: true });
    const r = await quantizeModel(folder.onnxPath, v, files[k], { ...opts, onProgress: (d, t) => progress.update(d, t) }).finally(() => progress.done());
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const rec = r.record;
    console.log(`${v}: ${r.quantized.length} linear layers quantized (${pct(rec.decoder_fraction_quantized)} of decoder linear-weight parameters, ${pct(rec.fraction_quantized)} of all), ${r.skipped.length} kept in float${r.skipped.length ? `: ${r.skipped.join(', ')}` : ''} → ${files[k]}`);
  }
}

async function convertCommand(a: Args): Promise<void> {
  const { convertCheckpoint } = await import('../onnx/convert/index.ts');
  const outDir = path.resolve(a.output);
  checkFolderEmpty(outDir, { force: a.force });
  const r = await convertCheckpoint(path.resolve(a.checkpoint), outDir, { tokenizer: a.tokenizer ? path.resolve(a.tokenizer) : undefined });
  console.log(`${r.kind} → ${r.outDir}`);
}

function quantizeOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .positional('model', { type: 'string', demandOption: true, describe: 'model folder' })
    .option('to', { type: 'string', demandOption: true, describe: 'comma-separated: nf4, fp4, llm-int8, q4, int8, dynamic-int8' })
    .option('output', output('folder for model_<variant>.onnx (default: the quantization cache that runs use, $QUANTLENS_CACHE or ~/.cache/quantlens)'))
    .option('force', force('overwrite existing model_<variant>.onnx files in --output'))
    .option('block-size', { type: 'number', describe: 'nf4/fp4: default 64; q4/int8: default 32' })
    .option('double-quant', { type: 'boolean', describe: 'nf4/fp4: quantize the absmax (default); --no-double-quant stores it in float32' })
    .option('asymmetric', { type: 'boolean', describe: 'q4/int8: zero points' })
    .option('outlier-threshold', { type: 'number', describe: 'llm-int8: default 6.0' })
    .option('include-lm-head', { type: 'boolean', describe: 'quantize lm_head too (bitsandbytes leaves it in float)' })
    .option('allow-partial', { type: 'boolean', default: false, describe: 'accept decoder linear weights that cannot be quantized (kept in float, listed)' }) as Argv<T>;
}

export function toolCommands<T>(y: Argv<T>): Argv<T> {
  return y
    .command(
      'merge <dirs..>',
      'merge the shard folders of `run --shard i/n` into the outputs of one run',
      (c) =>
        c
          .positional('dirs', { type: 'string', array: true, demandOption: true, describe: 'shard folders (shard-<i>-of-<n>), all n of them' })
          .option('output', output("output folder (default: the pipeline's output)"))
          .option('force', force('overwrite a finished output folder'))
          .option('report', { type: 'boolean', default: true, describe: 'write report.html at the end' }),
      mergeCommand,
    )
    .command(
      'inspect <model>',
      'show a model folder: inputs, outputs, layers and candidate activation tensors',
      (c) => c.positional('model', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }),
      async (a: Args) => {
        const { inspectModel, formatInspect } = await import('./inspect.ts');
        const r = await inspectModel(path.resolve(a.model));
        console.log(a.json ? JSON.stringify(r, null, 2) : formatInspect(r));
      },
    )
    .command('quantize <model>', 'write quantized variants of an fp32/fp16 ONNX model folder (into the cache, or --output)', quantizeOptions, quantizeCommand)
    .command(
      'convert <checkpoint>',
      'convert a llama2.c checkpoint or a Hugging Face safetensors folder (Llama/Mistral/Qwen2) to an ONNX model folder',
      (c) =>
        c
          .positional('checkpoint', { type: 'string', demandOption: true, describe: 'llama2.c .bin file, or a folder with config.json + *.safetensors' })
          .option('output', { ...output('model folder to write'), demandOption: true })
          .option('force', force('write into a non-empty folder'))
          .option('tokenizer', { type: 'string', describe: 'llama2.c tokenizer .bin (default: tokenizer.bin / tok*.bin beside the checkpoint)' }),
      convertCommand,
    )
    .command(
      'report <runs..>',
      'write report.html and figures/ for one run folder, or a comparison of several',
      (c) =>
        c
          .positional('runs', { type: 'string', array: true, demandOption: true })
          .option('output', output('report folder (default: the first run folder; with --suite, their parent folder)'))
          .option('suite', { type: 'boolean', default: false, describe: 'one cross-task report of task runs (one folder per task)' }),
      reportCommand,
    ) as Argv<T>;
}
