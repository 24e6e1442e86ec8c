/**
 * Attribution sessions prepack their MatMul weights only where the memory budget holds the packed
 * copy (pipelines/budget.ts withPrepacking): the copy's size against an independent count of the
 * graph's float MatMul/Gemm weights, the decision at budgets either side of it, the line
 * `quantlens validate` prints, the runner's sessions following the decision, and the attributions
 * of a prepacked session against an unpacked one (demo model, no ../shared needed).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { ensureDemoModel } from '../../sources/demo/demo-model.ts';
import { openModelFolder } from '../../sources/model/folder.ts';
import { readOnnxModel, type OnnxModel } from '../../onnx/model-reader.ts';
import { resolveLayers } from '../../onnx/capture.ts';
import { attributionPackedBytes, estimateMemory, formatMemoryEstimate, modelShape } from '../../pipelines/budget.ts';
import { attributeByLength, createAttributionSession } from '../../operators/attribution/lig.ts';
import { preparePlan, releasePlan } from '../../pipelines/plan.ts';
import { createAttributionRunners } from '../../pipelines/salience.ts';
import { tempDir } from '../helpers/temp.ts';

const GiB = 1024 ** 3;

/** Independent count: every MatMul/Gemm whose second input is a 2-D float32 initializer, 4 B an element. */
function floatMatmulWeightBytes(m: OnnxModel): number {
  let sum = 0;
  for (const n of m.nodes) {
    if (n.opType !== 'MatMul' && n.opType !== 'Gemm') continue;
    const w = m.initializers.get(n.inputs[1]);
    if (w && w.dims.length === 2 && w.dataType === 1) sum += w.dims[0] * w.dims[1] * 4;
  }
  return sum;
}

async function demo() {
  const folder = await openModelFolder(await ensureDemoModel({ size: 'tiny' }));
  return { folder, m: readOnnxModel(folder.onnxPath) };
}

test('the packed copy counted = the float MatMul/Gemm weights of the graph, LM head included', async () => {
  const { m } = await demo();
  try {
    const want = floatMatmulWeightBytes(m);
    assert.ok(want > 0);
    assert.is(attributionPackedBytes(m), want);
  } finally {
    m.source.close();
  }
});

test('prepacking is on when the budget holds the copy, off (with the reason) when only the copy does not fit', async () => {
  const dir = tempDir('ql-prepack-');
  const { folder, m } = await demo();
  try {
    // One attribution session (no workers): this is the prepacking decision alone (workers: attribution-workers.test.ts).
    const yaml = (budget: string) => `model: demo\ndataset: {path: demo}\nmeasure: [predictions, salience]\nsalience: {workers: 1}\n${budget}`;
    const cfg = parsePipeline(yaml(''), path.join(dir, 'p.yaml'));
    const sites = resolveLayers(m, cfg.layers, folder.config, 'layers');
    const shape = modelShape(m, folder.config, folder.vocabSize);
    const roomy = estimateMemory(m, cfg, sites, shape);
    assert.ok(roomy.salience!.prepack, roomy.salience!.prepackReason);
    assert.match(formatMemoryEstimate(roomy), /\nattribution prepacking: on: the budget holds the prepacked copy of the weights \([\d.]+ GiB\)/);
    const packed = attributionPackedBytes(m)!;
    // A budget between the need without the copy and the need with it.
    const without = roomy.totalBytes - packed;
    const tight = parsePipeline(yaml(`memory_budget_gb: ${(without + packed / 2) / GiB}\n`), path.join(dir, 'p.yaml'));
    const e = estimateMemory(m, tight, sites, shape);
    assert.is(e.salience!.prepack, false);
    assert.is(e.totalBytes, without, 'the copy is not counted when it is off');
    assert.ok(e.totalBytes <= e.budgetBytes, 'the run itself still fits');
    assert.match(e.salience!.prepackReason, /^off: the prepacked copy of the weights \([\d.]+ GiB\) does not fit in the budget$/);
    const attribution = (x: typeof e) => x.parts.find((p) => p.name === 'attribution')!;
    assert.is(attribution(roomy).bytes - attribution(e).bytes, packed);
    assert.match(attribution(roomy).detail, /\+ prepacked weights [\d.]+ GiB$/);
  } finally {
    m.source.close();
  }
});

test('a prepacked attribution session gives the unpacked one\'s attributions (float32 GEMM reassociation only)', async () => {
  const { folder } = await demo();
  const tensor = '/model/layers.1/mlp/act_fn/Mul_output_0';
  const cacheDir = tempDir('ql-prepack-cache-');
  const [off, on] = [await createAttributionSession(folder.onnxPath, tensor, { cacheDir }), await createAttributionSession(folder.onnxPath, tensor, { cacheDir, prepack: true })];
  try {
    assert.is(off.prepacked, false);
    assert.is(on.prepacked, true);
    const examples = [Int32Array.of(1, 5, 9, 13, 2, 7), Int32Array.of(1, 4, 4, 8), Int32Array.of(1, 3, 11, 6, 9, 10, 12)].map((ids) => ({ ids }));
    const opts = { steps: 8, onWarning: () => undefined };
    const a = await attributeByLength(off, examples, tensor, opts);
    const b = await attributeByLength(on, examples, tensor, opts);
    a.forEach((r, i) => {
      let d = 0;
      let n = 0;
      r.attributions.forEach((v, j) => {
        d += (v - b[i].attributions[j]) ** 2;
        n += v * v;
      });
      assert.ok(n > 0);
      assert.ok(Math.sqrt(d / n) < 1e-5, `example ${i}: relative L2 ${Math.sqrt(d / n)}`);
      assert.is(b[i].target, r.target);
    });
  } finally {
    await off.session.release();
    await on.session.release();
  }
});

test('the pipeline\'s attribution runners follow the estimate: prepacked with room, unpacked without', async () => {
  const dir = tempDir('ql-prepack-plan-');
  for (const [budget, want] of [['', true], ['memory_budget_gb: TIGHT\n', false]] as const) {
    const yaml = (b: string) => `model: demo\ndataset: {path: demo, limit: 2}\nmeasure: [predictions, salience]\nsalience: {workers: 1}\nlayers: [1]\noutput: ${path.join(dir, 'out')}\n${b}`;
    let cfg = parsePipeline(yaml(''), path.join(dir, 'p.yaml'));
    if (budget) {
      // Between the need without the copy and with it (the estimate of the roomy plan, less half the copy).
      const roomy = await preparePlan(cfg, { cacheDir: path.join(dir, 'cache') });
      const m = readOnnxModel(roomy.precisions[0].path);
      const packed = attributionPackedBytes(m)!;
      m.source.close();
      const tight = (roomy.memory!.totalBytes - packed / 2) / GiB;
      await releasePlan(roomy);
      cfg = parsePipeline(yaml(budget.replace('TIGHT', String(tight))), path.join(dir, 'p.yaml'));
    }
    const plan = await preparePlan(cfg, { cacheDir: path.join(dir, 'cache') });
    try {
      assert.is(plan.memory!.salience!.prepack, want);
      const runners = await createAttributionRunners(plan);
      for (const r of runners) {
        const s = await r.open();
        assert.is(s.prepacked, want, `${r.precision} ${r.site.tensor}`);
        await r.release();
      }
    } finally {
      await releasePlan(plan);
    }
  }
});

test.run();
