/**
 * The quantlens command line. Errors print one line (the QuantlensError message) and exit
 * non-zero; --debug prints the stack. In CI (CI=true) or with --quiet, progress is not drawn.
 */
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { isQuantlensError, QuantlensError } from '../core/errors.ts';
import { removePendingTemporaries } from '../core/atomic-write.ts';
import { loadPipeline } from './load.ts';
import { runPipeline } from './run.ts';
import { inspectModel, formatInspect } from './inspect.ts';

const repoRoot = path.resolve(import.meta.dirname, '..');
let debug = process.argv.includes('--debug');

function parseShard(s: string | undefined): { index: number; count: number } | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m || Number(m[1]) >= Number(m[2])) throw new QuantlensError('CONFIG', `--shard must look like i/n with 0 ≤ i < n, got "${s}"`, '--shard');
  return { index: Number(m[1]), count: Number(m[2]) };
}

const quietDefault = process.env.CI === 'true' || process.env.CI === '1';

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('quantlens')
    .usage('$0 <command> [options]\n\nSee what quantization does inside an LLM.')
    .option('debug', { type: 'boolean', default: false, describe: 'print stack traces on errors' })
    .option('quiet', { type: 'boolean', default: quietDefault, describe: 'no progress line (default in CI)' })
    .command(
      'run <pipeline>',
      'run a pipeline file and write its results',
      (y) =>
        y
          .positional('pipeline', { type: 'string', demandOption: true, describe: 'pipeline YAML file' })
          .option('shard', { type: 'string', describe: 'process slice i of n (e.g. 3/16) and write a mergeable shard state' })
          .option('output', { type: 'string', describe: 'override the output folder' })
          .option('limit', { type: 'number', describe: 'override dataset.limit' })
          .option('report', { type: 'boolean', default: true, describe: 'write report.html at the end' })
          .option('resume', { type: 'boolean', default: false, describe: 'continue from <output>/state/checkpoint.json when present, else start fresh' }),
      async (a) => {
        const cfg = loadPipeline(a.pipeline);
        if (a.output) cfg.output = path.resolve(a.output);
        if (a.limit !== undefined) cfg.dataset.limit = a.limit;
        await runPipeline(cfg, { shard: parseShard(a.shard), quiet: a.quiet, report: a.report, resume: a.resume });
      },
    )
    .command(
      'merge <dirs..>',
      'merge the shard folders of `run --shard i/n` into the outputs of one run',
      (y) =>
        y
          .positional('dirs', { type: 'string', array: true, demandOption: true, describe: 'shard folders (shard-<i>-of-<n>), all n of them' })
          .option('output', { type: 'string', describe: "output folder (default: the pipeline's output)" })
          .option('report', { type: 'boolean', default: true, describe: 'write report.html at the end' }),
      async (a) => {
        const { mergeShards } = await import('./merge.ts');
        const r = await mergeShards(a.dirs as string[], { output: a.output ? path.resolve(a.output) : undefined, report: a.report });
        console.log(`results: ${r.outDir}`);
      },
    )
    .command(
      'validate <pipeline>',
      'check a pipeline file, its model, dataset and layers without running it',
      (y) => y.positional('pipeline', { type: 'string', demandOption: true }),
      async (a) => {
        const cfg = loadPipeline(a.pipeline);
        const { preparePlan, releasePlan } = await import('./plan.ts');
        const plan = await preparePlan(cfg);
        await releasePlan(plan);
        console.log(`${a.pipeline}: ok — ${plan.precisions.map((p) => p.precision).join(', ')}; layers ${plan.sites.map((s) => `${s.layer} (${s.tensor})`).join(', ')}`);
        if (plan.memory) console.log((await import('./budget.ts')).formatMemoryEstimate(plan.memory));
      },
    )
    .command(
      'inspect <model>',
      'show a model folder: inputs, outputs, layers and candidate activation tensors',
      (y) => y.positional('model', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }),
      async (a) => {
        const r = await inspectModel(path.resolve(a.model));
        console.log(a.json ? JSON.stringify(r, null, 2) : formatInspect(r));
      },
    )
    .command(
      'quickstart',
      'run the built-in demo pipeline (generated demo model, random weights; no downloads)',
      (y) => y.option('output', { type: 'string', describe: 'output folder (default runs/quickstart)' }),
      async (a) => {
        const cfg = loadPipeline(path.join(repoRoot, 'pipelines', 'examples', 'quickstart.yaml'));
        if (a.output) cfg.output = path.resolve(a.output);
        const r = await runPipeline(cfg, { quiet: a.quiet });
        console.log(`results: ${r.outDir} (open report.html; demo model, random weights)`);
      },
    )
    .command(
      'quantize <model>',
      'write quantized variants of an fp32/fp16 ONNX model folder (onnx/model_<variant>.onnx)',
      (y) =>
        y
          .positional('model', { type: 'string', demandOption: true, describe: 'model folder' })
          .option('to', { type: 'string', demandOption: true, describe: 'comma-separated: nf4, fp4, llm-int8, q4, int8, dynamic-int8' })
          .option('out', { type: 'string', describe: 'folder for the variants (default: <model>/onnx)' })
          .option('block-size', { type: 'number', describe: 'nf4/fp4: default 64; q4/int8: default 32' })
          .option('no-double-quant', { type: 'boolean', describe: 'nf4/fp4: store absmax in float32' })
          .option('asymmetric', { type: 'boolean', describe: 'q4/int8: zero points' })
          .option('outlier-threshold', { type: 'number', describe: 'llm-int8: default 6.0' })
          .option('include-lm-head', { type: 'boolean', default: false, describe: 'quantize lm_head too (bitsandbytes leaves it in float)' }),
      async (a) => {
        const { QUANT_VARIANTS, quantizeModel } = await import('../onnx/quantize/index.ts');
        const { openModelFolder } = await import('../sources/model/folder.ts');
        const folder = await openModelFolder(path.resolve(a.model), a.model);
        const variants = a.to.split(',').map((v) => v.trim());
        for (const v of variants)
          if (!(QUANT_VARIANTS as readonly string[]).includes(v)) throw new QuantlensError('CONFIG', `unknown variant "${v}" (use ${QUANT_VARIANTS.join(', ')})`, '--to');
        const outDir = path.resolve(a.out ?? path.join(folder.dir, 'onnx'));
        for (const v of variants) {
          const out = path.join(outDir, `model_${v}.onnx`);
          const r = await quantizeModel(folder.onnxPath, v as (typeof QUANT_VARIANTS)[number], out, {
            blockSize: a.blockSize,
            doubleQuant: a.doubleQuant === false ? false : undefined,
            symmetric: a.asymmetric ? false : undefined,
            outlierThreshold: a.outlierThreshold,
            includeLmHead: a.includeLmHead,
          });
          console.log(`${v}: ${r.quantized.length} MatMuls quantized, ${r.skipped.length} kept in float → ${out}`);
        }
      },
    )
    .command(
      'convert <checkpoint>',
      'convert a llama2.c checkpoint or a Hugging Face safetensors folder (Llama/Mistral/Qwen2) to an ONNX model folder',
      (y) =>
        y
          .positional('checkpoint', { type: 'string', demandOption: true, describe: 'llama2.c .bin file, or a folder with config.json + *.safetensors' })
          .option('out', { type: 'string', demandOption: true, describe: 'model folder to write' })
          .option('tokenizer', { type: 'string', describe: 'llama2.c tokenizer .bin (default: tokenizer.bin / tok*.bin beside the checkpoint)' }),
      async (a) => {
        const { convertCheckpoint } = await import('../onnx/convert/index.ts');
        const r = await convertCheckpoint(path.resolve(a.checkpoint), path.resolve(a.out), { tokenizer: a.tokenizer ? path.resolve(a.tokenizer) : undefined });
        console.log(`${r.kind} → ${r.outDir}`);
      },
    )
    .command(
      'report <runs..>',
      'write report.html and figures/ for one run folder, or a comparison of several',
      (y) => y.positional('runs', { type: 'string', array: true, demandOption: true }).option('out', { type: 'string' })
        .option('suite', { type: 'boolean', default: false, describe: 'one cross-task report of task runs (one folder per task) into --out (default: their parent folder)' }),
      async (a) => {
        const { writeReport, writeSuiteReport } = await import('../sinks/report/index.ts');
        const runs = (a.runs as string[]).map((p) => path.resolve(p));
        const out = a.out ? path.resolve(a.out) : undefined;
        const r = a.suite ? await writeSuiteReport(runs, out ?? path.dirname(runs[0])) : await writeReport(runs, { out });
        console.log(r.html);
      },
    )
    .demandCommand(1, 'name a command; see --help')
    .strict()
    .fail((msg, err) => {
      if (err) throw err;
      throw new QuantlensError('CONFIG', msg);
    })
    .help()
    .parseAsync();
}

try {
  await main();
} catch (e) {
  removePendingTemporaries();
  if (debug || !isQuantlensError(e)) console.error(debug ? e : `quantlens: ${(e as Error).message}`);
  else console.error(`quantlens: ${e.message}`);
  process.exitCode = isQuantlensError(e) && e.code === 'INTERRUPTED' ? 130 : 1;
}
