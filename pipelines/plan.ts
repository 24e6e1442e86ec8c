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
import { modelHashOnce } from '../sources/model/hash.ts';
import { loadTokenizer, checkTokenizerFitsModel, type TextTokenizer } from '../sources/tokenizer.ts';
import { datasetColumns, type DatasetSpec } from '../sources/dataset/open.ts';
import { compilePrompt, checkPromptColumns, type PromptTemplate } from '../sources/prompt.ts';
import { defaultOpset, readOnnxModel, type OnnxModel } from '../onnx/model-reader.ts';
import { resolveLayers, type ActivationSite } from '../onnx/capture.ts';
import { augmentForRun, reshapedName } from '../onnx/augment.ts';
import { BlockMoments } from '../onnx/block-moments.ts';
import { createSession, defaultSessionSettings, describeSettings, type SessionSettings } from '../onnx/session.ts';
import { checkExecutionProviders } from '../onnx/execution-providers.ts';
import { planInputs } from '../onnx/feeds.ts';
import { paddingSideFor, pastHintsFor } from '../onnx/attention-layout.ts';
import type { PrecisionRunner } from '../operators/infer.ts';
import { datasetPath, modelRecord, outputMetadata } from './output-metadata.ts';
import { resolveDemo } from './demo.ts';
import { confirmPaddingSide } from './padding-probe.ts';
import { resolvePrecisionModel } from './precisions.ts';
import { quantSessionConfig } from '../onnx/quantize/index.ts';
import { packageInfo } from '../core/package-info.ts';
import { checkMemoryBudget, estimateMemory, modelShape, type MemoryEstimate } from './budget.ts';

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
  /** The memory estimate checked against memory_budget_gb (pipelines/budget.ts). */
  memory?: MemoryEstimate;
  /** Cache folder given to preparePlan (quantized variants, attribution graphs); default per user. */
  cacheDir?: string;
  /** Set by releasePlan: the runners' sessions are closed (a salience pass after the stream closes them early, pipelines/salience-pass.ts). */
  inferenceReleased?: boolean;
}

export async function preparePlan(cfg: PipelineConfig, opts: { shard?: { index: number; count: number }; cacheDir?: string } = {}): Promise<Plan> {
  const where = (key: string) => `${path.basename(cfg.file || 'pipeline')}: ${key}`;
  const demo = await resolveDemo(cfg);
  const folder = await openModelFolder(demo.modelDir, where('model'));
  const tokenizer = await loadTokenizer(folder.tokenizerDir);
  checkTokenizerFitsModel(tokenizer, folder, where('model'));
  const dataset: DatasetSpec = { ...cfg.dataset, path: demo.datasetPath, shard: opts.shard ?? cfg.dataset.shard };
  const template = await checkDatasetAndPrompt(cfg, dataset, where);
  const graph = readGraphFacts(cfg, folder, tokenizer, where);
  const { sites, nativePrecision } = graph;
  const route = measureRoute(cfg, graph);
  // Keys that do not fit together become extra passes (pipelines/correlation-passes.ts); one that cannot fit alone is refused.
  const refusal = graph.memory.correlation?.refusal;
  if (refusal) throw new QuantlensError('BUDGET', refusal.message, where(refusal.key));
  // Before any quantization, session or output: a run that cannot fit does no work at all.
  checkMemoryBudget(graph.memory, where('memory_budget_gb'));
  const session = await sessionSettingsFor(cfg, where);

  const hash = await modelHashOnce(folder);
  const precisions: PrecisionInfo[] = [];
  const runners: PrecisionRunner[] = [];
  for (const precision of cfg.precisions) {
    const resolved = await resolvePrecisionModel(folder, precision, cfg, nativePrecision, opts.cacheDir);
    precisions.push({ precision, ...resolved });
    runners.push(await openRunner(cfg, precision, resolved.path, graph, route, session));
  }

  const maxContext = Math.min(folder.maxContext ?? 2048, 1 << 16);
  const reference = runners.find((r) => r.precision === nativePrecision);
  const padSide = await confirmPaddingSide(runners, reference, tokenizer, graph.feed.padding, { maxContext, where: where('model') });
  // Paths relative to the output folder, no cache paths (pipelines/output-metadata.ts).
  const model = modelRecord(cfg, folder.dir, hash, !!demo.label);
  const metadata: Record<string, string> = {
    'quantlens.version': packageInfo().version,
    ...outputMetadata(cfg, model, datasetPath(cfg, demo.datasetPath), precisions, !!demo.label),
    'quantlens.ort_version': ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown',
    'quantlens.session_settings': JSON.stringify(describeSettings(session)),
    'quantlens.padding': JSON.stringify(padSide),
  };
  if (demo.label) metadata['quantlens.model_label'] = demo.label;
  return { cfg, folder, modelHash: hash, demoLabel: demo.label, tokenizer, template, dataset, sites, runners, precisions, session, maxContext, metadata, memory: graph.memory, cacheDir: opts.cacheDir };
}

/** The gold column exists and the prompt template names only columns the dataset has. */
async function checkDatasetAndPrompt(cfg: PipelineConfig, dataset: DatasetSpec, where: (key: string) => string): Promise<PromptTemplate> {
  const columns = await datasetColumns(dataset);
  if (!columns.includes(cfg.dataset.gold))
    throw new QuantlensError('DATASET', `dataset has no gold column "${cfg.dataset.gold}" (columns: ${columns.join(', ')})`, dataset.path);
  const template = compilePrompt(cfg.dataset.prompt, where('dataset.prompt'));
  checkPromptColumns(template, columns, where('dataset.prompt'));
  return template;
}

interface GraphFacts {
  sites: ActivationSite[];
  /** The float type the model was exported in: 'fp32' / 'fp16' name the model as given. */
  nativePrecision: 'fp32' | 'fp16';
  opset: number;
  feed: ReturnType<typeof graphFeedInfo>;
  /** What the run will hold in memory, estimated from the graph before any work. */
  memory: MemoryEstimate;
}

/** What the plan needs from the model's graph: capture sites, native precision, opset, feeds, memory estimate. */
function readGraphFacts(cfg: PipelineConfig, folder: ModelFolder, tokenizer: TextTokenizer, where: (key: string) => string): GraphFacts {
  const graph = readOnnxModel(folder.onnxPath);
  let sites: ActivationSite[];
  let feed: ReturnType<typeof graphFeedInfo>;
  let logitsType: number | null | undefined;
  let opset: number;
  let memory: MemoryEstimate;
  try {
    // Without config.json the logits width is the model's vocabulary: refuse before ORT meets an id out of range.
    const logitsWidth = graph.outputs.find((o) => o.name === 'logits')?.dims?.at(-1);
    if (folder.vocabSize === null && typeof logitsWidth === 'number') checkTokenizerFitsModel(tokenizer, { ...folder, vocabSize: logitsWidth }, where('model'));
    logitsType = graph.outputs.find((o) => o.name === 'logits')?.elemType ?? graph.outputs[0]?.elemType;
    opset = defaultOpset(graph);
    feed = graphFeedInfo(graph, folder);
    sites = resolveLayers(graph, cfg.layers, folder.config ?? folder.genai, where('layers'));
    memory = estimateMemory(graph, cfg, sites, modelShape(graph, folder.config, folder.vocabSize));
  } finally {
    graph.source.close();
  }
  if (folder.vocabSize === null && feed.logitsDim) checkTokenizerFitsModel(tokenizer, { ...folder, vocabSize: feed.logitsDim }, where('model'));
  sites = sites.map((s) => (s.flat ? { ...s, capture: reshapedName(s.tensor) } : s));
  return { sites, nativePrecision: logitsType === 10 ? 'fp16' : 'fp32', opset, feed, memory };
}

/**
 * Per-neuron moments (neurons, dead, and agreement's dead-set overlap) are reduced inside the
 * model's own graph when the widths are known (block-moments.ts: it gathers the real rows fed per
 * batch, so a model without an attention_mask input qualifies too); the activations themselves
 * leave ONNX Runtime only for measures that need every value.
 */
function measureRoute(cfg: PipelineConfig, g: GraphFacts): { momentsInGraph: boolean; needsChunks: boolean } {
  const needsMoments = cfg.measure.some((m) => ['neurons', 'dead', 'agreement'].includes(m));
  // Not for fp16 exports: ORT computes their fp16 ops in float32 with inserted casts, and a Cast
  // we append can be folded into those, so in-graph statistics would see pre-rounding values
  // instead of the fp16 tensor the model outputs. Those runs take the chunk path.
  const momentsInGraph = needsMoments && g.opset >= 9 && g.nativePrecision === 'fp32' && g.sites.every((s) => s.width !== null);
  const needsChunks = cfg.measure.some((m) => ['correlation', 'agreement'].includes(m)) || !!cfg.activations || (needsMoments && !momentsInGraph);
  return { momentsInGraph, needsChunks };
}

/** ORT settings shared by every session of the run, providers checked before any work. */
async function sessionSettingsFor(cfg: PipelineConfig, where: (key: string) => string): Promise<SessionSettings> {
  const session = defaultSessionSettings();
  if (cfg.session.intra_op_threads > 0) session.intraOpThreads = cfg.session.intra_op_threads;
  session.graphOptimizationLevel = cfg.session.graph_optimization_level;
  // Every session of the run (inference, estimator graphs, attribution) uses these providers.
  await checkExecutionProviders(cfg.session.execution_providers, where('session.execution_providers'));
  session.executionProviders = [...cfg.session.execution_providers];
  // Identical for every precision (fp32 included): ORT must not re-fuse DequantizeLinear+MatMul
  // into int8-activation kernels, or its own rounding would be mixed into "quantization effects".
  Object.assign(session.extra, quantSessionConfig());
  return session;
}

/** One precision's session over the model augmented for the run (captures, moments, last logits). */
async function openRunner(cfg: PipelineConfig, precision: string, file: string, g: GraphFacts, route: { momentsInGraph: boolean; needsChunks: boolean }, session: SessionSettings): Promise<PrecisionRunner> {
  const { sites } = g;
  const bytes = augmentForRun(readFileSync(file), {
    captures: route.needsChunks ? sites.map((s) => s.capture ?? s.tensor) : [],
    moments: route.momentsInGraph ? { tensors: sites.map((s) => ({ name: s.capture ?? s.tensor, width: s.width! })), opset: g.opset } : undefined,
    ...captureViews(sites, g.feed.idsName),
  });
  const s = await createSession(bytes, session, { externalDataDir: path.dirname(file), where: file });
  // Inputs the fragment added (quantlens/…) are fed by operators/infer.ts, not planned as model inputs.
  const modelInputs = { inputMetadata: s.inputMetadata.filter((i) => !i.name.startsWith('quantlens/')) } as Pick<typeof s, 'inputMetadata'>;
  return {
    precision,
    session: s,
    plan: planInputs(modelInputs, file, g.feed.inputOptions),
    sites: route.needsChunks ? sites : [],
    moments: route.momentsInGraph ? new BlockMoments(sites, { lo: cfg.dead.lo, hi: cfg.dead.hi }) : undefined,
    // All-position agreement needs every position's logits (the model's own output, fetched only then).
    fullLogits: cfg.measure.includes('perplexity') ? 'logits' : undefined,
    skipPromptPass: promptPassUnused(cfg),
  };
}

/**
 * In loglik mode the prediction comes from the continuation passes (operators/loglik.ts); the
 * prompt's own forward pass is needed only for measures on its activations or logits.
 */
function promptPassUnused(cfg: PipelineConfig): boolean {
  const readsPromptPass = cfg.measure.some((m) => ['neurons', 'dead', 'correlation', 'agreement', 'salience', 'perplexity'].includes(m));
  return cfg.scoring.mode === 'loglik' && !readsPromptPass && !cfg.activations;
}

/** What feeding this graph needs: input names, the padding side and past dims, the logits width. */
function graphFeedInfo(graph: OnnxModel, folder: ModelFolder) {
  const padding = paddingSideFor(graph);
  const logits = graph.outputs.find((o) => o.name === 'logits') ?? graph.outputs[0];
  const width = logits?.dims?.at(-1);
  return {
    idsName: graph.inputs.find((i) => i.name === 'input_ids')?.name ?? 'input_ids',
    padding,
    inputOptions: { padSide: padding.side, past: pastHintsFor(graph, folder.config, folder.genai) },
    /** Without a vocab_size in the configs, the logits' last dim is the model's id range. */
    logitsDim: typeof width === 'number' ? width : null,
  };
}

/**
 * augmentForRun options for how sites are read: [B·T, d_ff] activations (Gemm-based exports such
 * as OPT) through a [B, T, d_ff] view; last logits always gathered per row, so the padding probe
 * can switch sides without new sessions.
 */
function captureViews(sites: ActivationSite[], idsName: string) {
  return { reshape3d: { idsName, tensors: sites.filter((s) => s.flat).map((s) => s.tensor) }, gatherLast: true };
}

/** Releases the inference sessions once (the salience pass does it early, the run's end again). */
export async function releasePlan(plan: Plan): Promise<void> {
  if (plan.inferenceReleased) return;
  plan.inferenceReleased = true;
  for (const r of plan.runners) await r.session.release();
}
