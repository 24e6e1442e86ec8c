/**
 * From a validated PipelineConfig to a Plan: everything a run needs, opened and checked BEFORE
 * any batch is read — model folder, tokenizer, dataset columns, layers, one ONNX Runtime session
 * per precision, the correlation memory budget. A bad input fails here, with nothing written.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { QuantlensError } from '../core/errors.ts';
import type { PipelineConfig } from './schema.ts';
import { openModelFolder, type ModelFolder } from '../sources/model/folder.ts';
import { modelHash } from '../sources/model/hash.ts';
import { loadTokenizer, checkTokenizerFitsModel, type TextTokenizer } from '../sources/tokenizer.ts';
import { datasetColumns, type DatasetSpec } from '../sources/dataset/open.ts';
import { compilePrompt, checkPromptColumns, type PromptTemplate } from '../sources/prompt.ts';
import { readOnnxModel } from '../onnx/model-reader.ts';
import { resolveLayers, type ActivationSite } from '../onnx/capture.ts';
import { augmentForRun } from '../onnx/augment.ts';
import { InGraphMoments } from '../onnx/moment-stats.ts';
import { createSession, defaultSessionSettings, describeSettings, type SessionSettings } from '../onnx/session.ts';
import { checkExecutionProviders } from '../onnx/execution-providers.ts';
import { planInputs } from '../onnx/feeds.ts';
import { checkCorrelationBudget } from '../operators/estimators/correlation.ts';
import type { PrecisionRunner } from '../operators/infer.ts';
import { datasetPath, modelRecord, outputMetadata } from './output-metadata.ts';
import { resolveDemo } from './demo.ts';
import { resolvePrecisionModel } from './precisions.ts';
import { quantSessionConfig } from '../onnx/quantize/index.ts';

export interface PrecisionInfo {
  precision: string;
  path: string;
  source: string;
  settings: Record<string, unknown>;
}

export interface Plan {
  cfg: PipelineConfig;
  folder: ModelFolder;
  modelHash: string;
  /** 'demo model, random weights' for the built-in demo model, else null. */
  demoLabel: string | null;
  tokenizer: TextTokenizer;
  template: PromptTemplate;
  dataset: DatasetSpec;
  sites: ActivationSite[];
  runners: PrecisionRunner[];
  precisions: PrecisionInfo[];
  session: SessionSettings;
  maxContext: number;
  /** Key-value metadata written into every Parquet file and summary.json. */
  metadata: Record<string, string>;
  /** Cache folder given to preparePlan (quantized variants, attribution graphs); default per user. */
  cacheDir?: string;
}

/**
 * In loglik mode the prediction comes from the continuation passes (operators/loglik.ts); the
 * prompt's own forward pass is needed only for measures on its activations or last logits.
 */
function promptPassUnused(cfg: PipelineConfig, activationsNeeded: boolean): boolean {
  return cfg.scoring.mode === 'loglik' && !activationsNeeded && !cfg.activations;
}

export async function preparePlan(cfg: PipelineConfig, opts: { shard?: { index: number; count: number }; cacheDir?: string } = {}): Promise<Plan> {
  const where = (key: string) => `${path.basename(cfg.file || 'pipeline')}: ${key}`;
  const demo = await resolveDemo(cfg);
  const folder = await openModelFolder(demo.modelDir, where('model'));
  const tokenizer = await loadTokenizer(folder.tokenizerDir);
  checkTokenizerFitsModel(tokenizer, folder, where('model'));

  const dataset: DatasetSpec = { ...cfg.dataset, path: demo.datasetPath, shard: opts.shard ?? cfg.dataset.shard };
  const columns = await datasetColumns(dataset);
  if (!columns.includes(cfg.dataset.gold))
    throw new QuantlensError('DATASET', `dataset has no gold column "${cfg.dataset.gold}" (columns: ${columns.join(', ')})`, dataset.path);
  const template = compilePrompt(cfg.dataset.prompt, where('dataset.prompt'));
  checkPromptColumns(template, columns, where('dataset.prompt'));

  const graph = readOnnxModel(folder.onnxPath);
  let sites: ActivationSite[];
  // The float type the model was exported in: 'fp32' / 'fp16' name the model as given.
  const logitsType = graph.outputs.find((o) => o.name === 'logits')?.elemType ?? graph.outputs[0]?.elemType;
  const nativePrecision = logitsType === 10 ? 'fp16' : 'fp32';
  const opset = graph.opsets.find((o) => o.domain === '')?.version ?? 0;
  const maskInput = graph.inputs.find((i) => i.name === 'attention_mask')?.name;
  try {
    sites = resolveLayers(graph, cfg.layers, folder.config, where('layers'));
  } finally {
    graph.source.close();
  }

  // Per-neuron moments (neurons, dead, and agreement's dead-set overlap) are reduced inside the
  // model's own graph when it has an attention mask and known widths (moment-stats.ts); the
  // activations themselves leave ONNX Runtime only for measures that need every value.
  const needsMoments = cfg.measure.some((m) => ['neurons', 'dead', 'agreement'].includes(m));
  // Not for fp16 exports: ORT computes their fp16 ops in float32 with inserted casts, and a Cast
  // we append can be folded into those, so in-graph statistics would see pre-rounding values
  // instead of the fp16 tensor the model outputs. Those runs take the chunk path.
  const momentsInGraph = needsMoments && !!maskInput && opset >= 9 && nativePrecision === 'fp32' && sites.every((s) => s.width !== null);
  const needsChunks = cfg.measure.some((m) => ['correlation', 'agreement'].includes(m)) || !!cfg.activations || (needsMoments && !momentsInGraph);
  if (cfg.measure.includes('correlation')) {
    const width = Math.max(...sites.map((s) => s.width ?? 0));
    checkCorrelationBudget(width, sites.length * cfg.precisions.length, cfg.correlation.memory_budget_gb * 1024 ** 3, where('correlation.memory_budget_gb'));
  }

  const session = defaultSessionSettings();
  if (cfg.session.intra_op_threads > 0) session.intraOpThreads = cfg.session.intra_op_threads;
  session.graphOptimizationLevel = cfg.session.graph_optimization_level;
  // Every session of the run (inference, estimator graphs, attribution) uses these providers.
  await checkExecutionProviders(cfg.session.execution_providers, where('session.execution_providers'));
  session.executionProviders = [...cfg.session.execution_providers];
  // Identical for every precision (fp32 included): ORT must not re-fuse DequantizeLinear+MatMul
  // into int8-activation kernels, or its own rounding would be mixed into "quantization effects".
  Object.assign(session.extra, quantSessionConfig());

  const hash = await modelHash(folder);
  const precisions: PrecisionInfo[] = [];
  const runners: PrecisionRunner[] = [];
  for (const precision of cfg.precisions) {
    const resolved = await resolvePrecisionModel(folder, precision, cfg, nativePrecision, opts.cacheDir);
    precisions.push({ precision, ...resolved });
    const bytes = augmentForRun(readFileSync(resolved.path), {
      captures: needsChunks ? sites.map((s) => s.tensor) : [],
      moments: momentsInGraph ? { tensors: sites.map((s) => ({ name: s.tensor, width: s.width! })), maskName: maskInput!, opset } : undefined,
    });
    const s = await createSession(bytes, session, { externalDataDir: path.dirname(resolved.path), where: resolved.path });
    // Inputs the fragment added (quantlens/…) are fed by operators/infer.ts, not planned as model inputs.
    const modelInputs = { inputMetadata: s.inputMetadata.filter((i) => !i.name.startsWith('quantlens/')) } as Pick<typeof s, 'inputMetadata'>;
    runners.push({
      precision,
      session: s,
      plan: planInputs(modelInputs, resolved.path),
      sites: needsChunks ? sites : [],
      moments: momentsInGraph ? new InGraphMoments(sites, { lo: cfg.dead.lo, hi: cfg.dead.hi }) : undefined,
      skipPromptPass: promptPassUnused(cfg, needsMoments || needsChunks),
    });
  }

  const maxContext = Math.min(folder.maxContext ?? 2048, 1 << 16);
  // Paths relative to the output folder, no cache paths (pipelines/output-metadata.ts).
  const model = modelRecord(cfg, folder.dir, hash, !!demo.label);
  const metadata: Record<string, string> = {
    'quantlens.version': '0.1.0',
    ...outputMetadata(cfg, model, datasetPath(cfg, demo.datasetPath), precisions, !!demo.label),
    'quantlens.ort_version': ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown',
    'quantlens.session_settings': JSON.stringify(describeSettings(session)),
  };
  if (demo.label) metadata['quantlens.model_label'] = demo.label;
  return { cfg, folder, modelHash: hash, demoLabel: demo.label, tokenizer, template, dataset, sites, runners, precisions, session, maxContext, metadata, cacheDir: opts.cacheDir };
}

export async function releasePlan(plan: Plan): Promise<void> {
  for (const r of plan.runners) await r.session.release();
}
