/**
 * pipelines/budget.ts: the weight bytes it counts equal the tensors actually stored (brute force
 * over every initializer, and the quantizer's own output files); a run over `memory_budget_gb` is
 * refused before any quantization, session or output exists; a fitting run records the estimate.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { ensureDemoModel } from '../../sources/demo/demo-model.ts';
import { openModelFolder } from '../../sources/model/folder.ts';
import { readOnnxModel, readTensorBytes, type OnnxModel } from '../../onnx/model-reader.ts';
import { quantizeModel } from '../../onnx/quantize/index.ts';
import { resolveLayers } from '../../onnx/capture.ts';
import { attributionPackedBytes, attributionStepFactor, budgetBytes, checkMemoryBudget, estimateMemory, modelShape, modelWeightBytes, quantizedWeightBytes } from '../../pipelines/budget.ts';
import { correlationMemoryBytes } from '../../operators/estimators/correlation.ts';
import { expectRejects, expectThrows } from '../helpers/expect-error.ts';
import { runCli, writePipeline } from '../helpers/pipeline.ts';
import { sharedPath } from '../helpers/shared.ts';
import { tempDir } from '../helpers/temp.ts';

const GiB = 1024 ** 3;

/** Independent count: read every initializer's bytes and add their lengths. */
function storedBytes(m: OnnxModel): number {
  let sum = 0;
  for (const t of m.initializers.values()) sum += readTensorBytes(m, t).length;
  return sum;
}

test('model weight bytes = the bytes of every stored initializer (inline and external data)', async () => {
  const demo = readOnnxModel((await openModelFolder(await ensureDemoModel({ size: 'tiny' }))).onnxPath);
  try {
    assert.is(modelWeightBytes(demo), storedBytes(demo));
    assert.ok(modelWeightBytes(demo) > 0);
  } finally {
    demo.source.close();
  }
  const dir = sharedPath('models/tiny-random-llama-fp16', 'external-data weight bytes');
  if (!dir) return;
  const folder = await openModelFolder(dir);
  const m = readOnnxModel(folder.onnxPath);
  try {
    assert.is(modelWeightBytes(m), storedBytes(m));
    // Nearly all of it lives in the data file beside the model.
    const data = folder.externalData.reduce((s, f) => s + statSync(f).size, 0);
    assert.ok(modelWeightBytes(m) >= data && modelWeightBytes(m) <= data + statSync(folder.onnxPath).size, `${modelWeightBytes(m)} vs data ${data}`);
  } finally {
    m.source.close();
  }
});

test('quantized weight bytes, estimated before quantizing, = the bytes the quantizer writes', async () => {
  const src = (await openModelFolder(await ensureDemoModel({ size: 'tiny' }))).onnxPath;
  const out = tempDir('ql-budget-q-');
  const cfg = parsePipeline('model: demo\ndataset: {path: demo}\n', path.join(out, 'p.yaml'));
  const m = readOnnxModel(src);
  try {
    for (const variant of ['nf4', 'llm-int8', 'q4'] as const) {
      const est = quantizedWeightBytes(m, variant, cfg.quantization).bytes;
      const file = path.join(out, `model_${variant}.onnx`);
      await quantizeModel(src, variant, file);
      const q = readOnnxModel(file);
      try {
        // The variant's per-node constants (shapes, thresholds) are a few bytes per MatMul.
        const actual = storedBytes(q);
        assert.ok(Math.abs(est - actual) <= 0.01 * actual, `${variant}: estimate ${est} vs written ${actual}`);
        assert.ok(est < modelWeightBytes(m), `${variant} is smaller than fp32`);
      } finally {
        q.source.close();
      }
    }
  } finally {
    m.source.close();
  }
});

test('the estimate adds its parts; correlation uses the estimator formula; the default budget is 80 % of RAM', async () => {
  const dir = tempDir('ql-budget-e-');
  // One attribution session (salience.workers: 1): worker sessions are attribution-workers.test.ts's.
  const cfg = parsePipeline('model: demo\ndataset: {path: demo}\nprecisions: [fp32, nf4]\nmeasure: [predictions, correlation, salience]\nsalience: {workers: 1}\n', path.join(dir, 'p.yaml'));
  const folder = await openModelFolder(await ensureDemoModel({ size: 'tiny' }));
  const m = readOnnxModel(folder.onnxPath);
  try {
    const sites = resolveLayers(m, cfg.layers, folder.config, 'layers');
    const shape = modelShape(m, folder.config, folder.vocabSize);
    const e = estimateMemory(m, cfg, sites, shape);
    assert.equal(e.parts.map((p) => p.name), ['sessions', 'quantization', 'correlation', 'attribution', 'baseline']);
    assert.is(e.totalBytes, e.parts.reduce((s, p) => s + p.bytes, 0));
    const width = Math.max(...sites.map((s) => s.width!));
    // Issue 11: the upper triangle of every key (one pass fits here) plus one batch's float32 Gram
    // (one 192-wide block, twice: ORT's buffer and its JS copy; the centred batch of max_tokens
    // rows with its transpose and input), plus the finish's one 192×192 float64 distance matrix
    // (one thread: the keys are narrower than 2,048).
    assert.is(correlationMemoryBytes(width, 1), ((width * (width + 1)) / 2) * 8);
    assert.is(e.parts.find((p) => p.name === 'correlation')!.bytes, ((width * (width + 1)) / 2) * 8 * sites.length * 2 + (2 * width * width + 3 * cfg.batch.max_tokens * width) * 4 + width * width * 8);
    assert.is(e.correlation!.passes.length, 1);
    // Attribution: one session at a time, so the fp32 weights once (the larger precision), not 2 × 3 graphs.
    // Less ORT's prepacked copy of the MatMul weights, counted when the budget holds it (attribution-prepack.test.ts).
    const attribution = e.parts.find((p) => p.name === 'attribution')!.bytes - (e.salience!.prepack ? attributionPackedBytes(m)! : 0);
    assert.ok(attribution >= modelWeightBytes(m) && attribution < 2 * modelWeightBytes(m) + attributionStepFactor(shape, width) * cfg.salience.memory_budget_gb * GiB, `${attribution}`);
    assert.ok(Math.abs(budgetBytes({}) - 0.8 * (await import('node:os')).totalmem()) < 1);
    assert.is(budgetBytes({ memory_budget_gb: 2 }), 2 * GiB);
    expectThrows(() => checkMemoryBudget({ ...e, budgetBytes: e.totalBytes - 1 }, 'p.yaml: memory_budget_gb'), { code: 'BUDGET', message: /GiB over the budget.*largest part: \w+/ });
    checkMemoryBudget({ ...e, budgetBytes: e.totalBytes }, 'p.yaml: memory_budget_gb');
  } finally {
    m.source.close();
  }
});

test('an over-budget run is refused before any work: no output folder, nothing quantized', async () => {
  const dir = tempDir('ql-budget-r-');
  const cache = path.join(dir, 'cache');
  const cfg = parsePipeline('model: demo\ndataset: {path: demo}\nprecisions: [fp32, nf4]\noutput: out\nmemory_budget_gb: 0.05\n', path.join(dir, 'p.yaml'));
  const err = await expectRejects(runPipeline(cfg, { quiet: true, cacheDir: cache, log: () => undefined }), { code: 'BUDGET', message: /p\.yaml: memory_budget_gb: the run needs about [\d.]+ GiB, [\d.]+ GiB over the budget of 0\.05 GiB; largest part: baseline/ });
  assert.match(err.message, /sessions [\d.]+/);
  assert.not.ok(existsSync(path.join(dir, 'out')), 'no output folder');
  assert.not.ok(existsSync(cache) && readdirSync(cache).length > 0, 'no quantized variant written');
  assert.equal(readdirSync(dir), []);
});

test('the CLI: refusal is one line and a non-zero exit; validate prints every part', () => {
  const dir = tempDir('ql-budget-c-');
  const over = runCli(['run', writePipeline(dir, { memory_budget_gb: 0.05 }), '--quiet']);
  assert.ok(over.code !== 0 && over.code !== null);
  assert.is(over.stderr.split('\n').length, 1, over.stderr);
  assert.match(over.stderr, /memory_budget_gb: the run needs about/);
  assert.not.ok(existsSync(path.join(dir, 'out')));
  const ok = runCli(['validate', writePipeline(dir, { memory_budget_gb: 4, measure: ['predictions', 'correlation'] }, 'v.yaml')]);
  assert.is(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /memory estimate: [\d.]+ GiB of a 4\.00 GiB budget/);
  for (const part of ['sessions', 'correlation', 'baseline']) assert.match(ok.stdout, new RegExp(`\\n  ${part} +[\\d.]+ GiB`));
});

test('a fitting run records the estimate in summary.json', async () => {
  const dir = tempDir('ql-budget-s-');
  const cfg = parsePipeline('model: demo\ndataset: {path: demo, limit: 8}\nmeasure: [predictions, correlation]\noutput: out\nmemory_budget_gb: 3\n', path.join(dir, 'p.yaml'));
  const r = await runPipeline(cfg, { quiet: true, report: false, log: () => undefined });
  const s = JSON.parse(readFileSync(path.join(r.outDir, 'summary.json'), 'utf8'));
  assert.is(s.memory.budget_gib, 3);
  assert.equal(Object.keys(s.memory.parts), ['sessions', 'correlation', 'baseline']);
  const sum = Object.values(s.memory.parts as Record<string, { gib: number }>).reduce((a, p) => a + p.gib, 0);
  assert.ok(Math.abs(sum - s.memory.estimate_gib) < 0.005, `${sum} vs ${s.memory.estimate_gib}`);
});

test.run();
