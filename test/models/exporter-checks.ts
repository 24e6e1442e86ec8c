/**
 * One helper per check of the exporter matrix (test/models/exporters.test.ts), so rows (model
 * folders) and columns (checks, precisions) can be added independently. Every expected value is
 * computed here from the folder's own JSON files or by brute force, never by the code under test.
 */
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { SHARED_DIR } from '../helpers/shared.ts';
import { parsePipeline } from '../../pipelines/load.ts';
import { preparePlan, releasePlan, type Plan } from '../../pipelines/plan.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { runBatch } from '../../operators/infer.ts';
import { makeBatch } from '../../operators/batch.ts';
import { appendGraphOutputs } from '../../onnx/builder.ts';
import { readOnnxModel } from '../../onnx/model-reader.ts';
import { findActivationSites, countDecoderLayers, type ActivationSite } from '../../onnx/capture.ts';
import { planInputs, buildFeeds, type PadSide } from '../../onnx/feeds.ts';
import { paddingSideFor, pastHintsFor } from '../../onnx/attention-layout.ts';
import { createSession, defaultSessionSettings } from '../../onnx/session.ts';
import { openModelFolder, type ModelFolder } from '../../sources/model/folder.ts';
import { formatInspect, inspectModel } from '../../pipelines/inspect.ts';
import { readTable } from '../helpers/run-tables.ts';
import type { TokenizedExample } from '../../core/types.ts';
import { tempDir } from '../helpers/temp.ts';

export const EXPORTERS_REL = 'models/exporters';
export const BOOLQ = path.join(SHARED_DIR, 'datasets', 'boolq.csv');

/** Every model folder under ../shared/models/exporters (null when absent). */
export function exporterFolders(): string[] | null {
  const root = path.join(SHARED_DIR, EXPORTERS_REL);
  if (!existsSync(root)) return null;
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => path.join(root, d.name))
    .filter((d) => readdirSync(d).some((f) => f.endsWith('.onnx')) || existsSync(path.join(d, 'onnx')));
}

const readJson = (file: string): Record<string, any> | null => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null);

/** The layer count the folder declares: config.json, else genai_config.json's model.decoder. */
export function declaredLayers(dir: string): number {
  const c = readJson(path.join(dir, 'config.json'));
  const n = c ? (c.num_hidden_layers ?? c.n_layer) : readJson(path.join(dir, 'genai_config.json'))?.model?.decoder?.num_hidden_layers;
  assert.ok(Number.isInteger(n) && n > 0, `${dir}: no layer count in config.json or genai_config.json`);
  return n;
}

// Reference activations, written out independently of onnx/activation-functions.ts.
/** erf by composite Simpson integration of 2/√π·exp(−t²) (4000 panels: error ≪ 1e-10 for |x| ≤ 10). */
function erfRef(x: number): number {
  const n = 4000;
  const h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
  return ((s * h) / 3) * (2 / Math.sqrt(Math.PI));
}
const REFERENCE: Record<string, (x: number) => number> = {
  silu: (x) => x / (1 + Math.exp(-x)),
  gelu: (x) => 0.5 * x * (1 + erfRef(x / Math.SQRT2)),
  gelu_new: (x) => 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
  relu: (x) => (x > 0 ? x : 0),
};
REFERENCE.gelu_pytorch_tanh = REFERENCE.gelu_new;
REFERENCE.swish = REFERENCE.silu;
/** genai_config.json has no hidden_act; its model.type names the architecture, whose MLP act is fixed. */
const GENAI_TYPE_ACT: Record<string, string> = { llama: 'silu', mistral: 'silu', qwen2: 'silu', phi3: 'silu', gemma: 'gelu_pytorch_tanh', phi: 'gelu_new' };

/** The activation the folder's config declares, as a reference function and its name. */
export function declaredActivation(dir: string): { name: string; f: (x: number) => number } {
  const c = readJson(path.join(dir, 'config.json'));
  const name = c ? (c.hidden_act ?? c.activation_function) : GENAI_TYPE_ACT[readJson(path.join(dir, 'genai_config.json'))?.model?.type];
  const f = REFERENCE[name];
  assert.ok(f, `${dir}: no reference for activation "${name}"`);
  return { name, f };
}

/** Layer count agrees across config, capture and inspect; one site per layer, numbered 0..L−1. */
export async function checkLayerCount(dir: string): Promise<ActivationSite[]> {
  const expected = declaredLayers(dir);
  const folder = await openModelFolder(dir);
  // The folder as it lies: config.json and/or genai_config.json, the model at the root or in onnx/, external data beside it.
  assert.is(folder.config !== null, existsSync(path.join(dir, 'config.json')));
  assert.is(folder.genai !== null, existsSync(path.join(dir, 'genai_config.json')));
  assert.is(folder.onnxPath, [path.join(dir, 'model.onnx'), path.join(dir, 'onnx', 'model.onnx')].find((f) => existsSync(f)));
  assert.equal(folder.externalData, existsSync(`${folder.onnxPath}.data`) ? [`${folder.onnxPath}.data`] : []);
  const m = readOnnxModel(folder.onnxPath);
  try {
    assert.is(folder.vocabSize, m.outputs.find((o) => o.name === 'logits')?.dims?.at(-1), 'vocab size = logits width');
    const config = folder.config ?? folder.genai;
    assert.is(countDecoderLayers(m, config), expected);
    const sites = findActivationSites(m, config);
    assert.equal(sites.map((s) => s.layer), Array.from({ length: expected }, (_, i) => i), 'one site per layer');
    const report = await inspectModel(dir);
    assert.is(report.decoderLayers, expected);
    assert.is(report.layersFrom, existsSync(path.join(dir, 'config.json')) ? 'config.json' : 'genai_config.json');
    assert.ok(report.activations.every((a) => a.why && a.why.includes(a.input!)), 'inspect says why');
    const text = formatInspect(report);
    for (const s of sites) assert.ok(text.includes(`layer ${s.layer}  ${s.tensor}`) && text.includes(`why: ${s.why}`), `inspect lists layer ${s.layer}`);
    assert.match(text, `decoder layers ${expected} (from ${report.layersFrom})`);
    assert.not.match(text, 'warning:');
    return sites;
  } finally {
    m.source.close();
  }
}

/**
 * Every prebuilt variant beside the base model (transformers.js model_q4 / bnb4 / int8 / uint8 /
 * fp16) has the same hooked tensors, activations and widths as the base, whatever its linear ops.
 */
export async function checkVariantSites(dir: string, base: ActivationSite[]): Promise<string[]> {
  const folder = await openModelFolder(dir);
  const tags = Object.keys(folder.variants).filter((t) => folder.variants[t] !== folder.onnxPath);
  const key = (s: ActivationSite) => [s.layer, s.tensor, s.act, s.input, s.width];
  for (const tag of tags) {
    const m = readOnnxModel(folder.variants[tag]);
    try {
      assert.equal(findActivationSites(m, folder.config ?? folder.genai).map(key), base.map(key), `variant ${tag}`);
    } finally {
      m.source.close();
    }
  }
  return tags;
}

/** Input options exactly as a pipeline plans them for this folder. */
function inputOptions(folder: ModelFolder): { padSide: PadSide; past: ReturnType<typeof pastHintsFor> } {
  const m = readOnnxModel(folder.onnxPath);
  try {
    return { padSide: paddingSideFor(m).side, past: pastHintsFor(m, folder.config, folder.genai) };
  } finally {
    m.source.close();
  }
}

/** Deterministic token rows of the given lengths, BOS first (ids within the 512-token vocabulary). */
export function tokenRows(lengths: number[], bos = 1, vocab = 512): Int32Array[] {
  let seed = 20251;
  const next = () => 3 + ((seed = (seed * 1103515245 + 12345) >>> 0) % (vocab - 3));
  return lengths.map((n) => Int32Array.from({ length: n }, (_, j) => (j === 0 ? bos : next())));
}

/**
 * Fetch every site's captured tensor and the tensor entering its activation from one padded
 * batch; check captured = act(input [+ bias]) elementwise with act from the config. Returns the
 * largest error relative to max(1, |act|).
 */
export async function checkActivationValues(dir: string, sites: ActivationSite[]): Promise<number> {
  const folder = await openModelFolder(dir);
  const { f, name } = declaredActivation(dir);
  for (const s of sites) assert.ok(s.act && s.input, `${s.tensor}: activation and input recorded`);
  const fetch = [...new Set(sites.flatMap((s) => [s.tensor, s.input!]))];
  const bytes = appendGraphOutputs(readFileSync(folder.onnxPath), fetch.map((n) => ({ name: n })));
  const session = await createSession(bytes, defaultSessionSettings(), { externalDataDir: path.dirname(folder.onnxPath) });
  try {
    const plan = planInputs(session, folder.onnxPath, inputOptions(folder));
    const rows = tokenRows([7, 3, 11]);
    const out = await session.run(buildFeeds(plan, { seqLen: 11, lengths: Int32Array.from([7, 3, 11]), ids: rows }, 0), fetch);
    let worst = 0;
    for (const s of sites) {
      assert.ok(s.bias === undefined, `${s.tensor}: fused bias not expected in these exports`);
      const y = out[s.tensor].data as Float32Array;
      const x = out[s.input!].data as Float32Array;
      assert.is(y.length, x.length, `${s.tensor} and ${s.input} have the same size`);
      assert.is(out[s.tensor].dims[out[s.tensor].dims.length - 1], s.width, `${s.tensor} width`);
      for (let i = 0; i < y.length; i++) {
        const ref = f(x[i]);
        worst = Math.max(worst, Math.abs(y[i] - ref) / Math.max(1, Math.abs(ref)));
      }
    }
    assert.ok(worst < 1e-5, `${path.basename(dir)}: captured vs ${name}(input): ${worst}`);
    return worst;
  } finally {
    await session.release();
  }
}

function configYaml(dir: string, out: string, measure: string[], precisions = ['fp32'], limit = 12): string {
  return [
    `model: ${dir}`,
    `precisions: [${precisions.join(', ')}]`,
    'dataset:',
    `  path: ${BOOLQ}`,
    '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
    `  limit: ${limit}`,
    'layers: [first, middle, last]',
    'batch: {max_tokens: 2048, max_examples: 6}',
    `measure: [${measure.join(', ')}]`,
    `output: ${out}`,
  ].join('\n');
}

/** A plan for this folder as a pipeline would build it (sessions, sites, feeds), for direct runs. */
export async function planFor(dir: string, measure: string[]): Promise<Plan> {
  const out = tempDir('ql-exp-plan-');
  return preparePlan(parsePipeline(configYaml(dir, out, measure), path.join(out, 'p.yaml')));
}

const example = (id: number, ids: Int32Array): TokenizedExample => ({ example_id: id, ids, gold: 'True', truncated: false, fields: {} });

/**
 * A padded batch through the pipeline's own runner (augmented model, planned feeds, chunking)
 * against each example alone: largest |difference| of last-position logits and of every captured
 * activation row. `padSide` overrides the planned side (to show what the wrong side costs).
 */
export async function paddedVsAlone(dir: string, padSide?: PadSide): Promise<{ logits: number; acts: number; side: PadSide }> {
  const plan = await planFor(dir, ['predictions', 'correlation']);
  try {
    const runner = plan.runners[0];
    if (padSide) runner.plan = { ...runner.plan, padSide };
    const rows = tokenRows([9, 4, 13, 6]);
    const examples = rows.map((ids, i) => example(i, ids));
    const padded = await runBatch(runner, makeBatch(0, examples), plan.tokenizer.padId);
    let logits = 0;
    let acts = 0;
    const V = padded.prediction.vocab;
    for (let b = 0; b < examples.length; b++) {
      const alone = await runBatch(runner, makeBatch(1, [examples[b]]), plan.tokenizer.padId);
      for (let v = 0; v < V; v++) logits = Math.max(logits, Math.abs(padded.prediction.logits[b * V + v] - alone.prediction.logits[v]));
      padded.chunks.forEach((c, k) => {
        const a = alone.chunks[k];
        let r0 = 0;
        while (c.exampleId[r0] !== b) r0++;
        assert.is(a.rows, rows[b].length);
        for (let r = 0; r < a.rows; r++) {
          assert.is(c.position[r0 + r], r);
          for (let j = 0; j < c.width; j++) acts = Math.max(acts, Math.abs(c.values[(r0 + r) * c.width + j] - a.values[r * a.width + j]));
        }
      });
    }
    assert.is(padded.chunks.length, plan.sites.length);
    return { logits, acts, side: runner.plan.padSide ?? 'left' };
  } finally {
    await releasePlan(plan);
  }
}

/**
 * loglik scoring (full logits at every continuation position) from batches of 6 against batches
 * of 1: largest |Δ confidence| and whether every prediction agrees.
 */
export async function loglikBatchedVsAlone(dir: string): Promise<{ maxDiff: number; same: boolean }> {
  const run = async (maxExamples: number) => {
    const out = tempDir('ql-exp-loglik-');
    const yaml = configYaml(dir, out, ['predictions'], ['fp32'], 6)
      .replace('batch: {max_tokens: 2048, max_examples: 6}', `batch: {max_tokens: 2048, max_examples: ${maxExamples}}\nscoring: {mode: loglik, choices: [" True", " False"]}`);
    await runPipeline(parsePipeline(yaml, path.join(out, 'p.yaml')), { quiet: true, report: false, log: () => undefined });
    const rows = (await readTable(path.join(out, 'predictions.parquet'))).rows;
    return new Map(rows.map((r) => [Number(r.example_id), r]));
  };
  const batched = await run(6);
  const alone = await run(1);
  let maxDiff = 0;
  let same = batched.size === 6 && alone.size === 6;
  for (const [id, r] of batched) {
    const a = alone.get(id)!;
    maxDiff = Math.max(maxDiff, Math.abs((r.confidence as number) - (a.confidence as number)));
    same &&= r.predicted_token === a.predicted_token;
  }
  return { maxDiff, same };
}

const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

/**
 * A pipeline at the folder's own precision with predictions, neurons, dead, correlation and
 * calibration: every numeric output finite, one neurons row per captured neuron.
 */
export async function checkRun(dir: string, precisions = ['fp32']): Promise<Record<string, any>> {
  const out = tempDir('ql-exp-run-');
  const measure = ['predictions', 'neurons', 'dead', 'correlation', 'calibration'];
  const { summary } = await runPipeline(parsePipeline(configYaml(dir, out, measure, precisions), path.join(out, 'p.yaml')), { quiet: true, report: false, log: () => undefined });
  const preds = (await readTable(path.join(out, 'predictions.parquet'))).rows;
  assert.is(preds.length, 12 * precisions.length);
  assert.ok(preds.every((r) => finite(r.confidence) && (r.confidence as number) > 0 && (r.confidence as number) <= 1), 'confidence finite in (0, 1]');
  const neurons = (await readTable(path.join(out, 'neurons.parquet'))).rows;
  const sites = (summary as any).layers as { width: number }[];
  assert.is(neurons.length, sites.reduce((a, s) => a + s.width, 0) * precisions.length);
  for (const r of neurons) for (const k of ['mean', 'variance', 'min', 'max', 'near_zero_fraction']) assert.ok(finite(r[k]), `neurons.${k} finite`);
  const dead = (await readTable(path.join(out, 'dead.parquet'))).rows;
  assert.is(dead.length, sites.length * precisions.length);
  const corr = (await readTable(path.join(out, 'correlation.parquet'))).rows;
  assert.ok(corr.length > 0 && corr.every((r) => Number(r.pairs) >= 0));
  const calib = (await readTable(path.join(out, 'calibration.parquet'))).rows;
  assert.ok(calib.length > 0 && calib.every((r) => Number(r.count) === 0 || (finite(r.accuracy) && finite(r.mean_confidence))));
  for (const p of precisions) for (const k of ['accuracy', 'mean_confidence', 'ace', 'ece']) assert.ok(finite((summary as any).precisions[p][k]), `${p}.${k} finite`);
  return summary as Record<string, any>;
}

export { ort };
