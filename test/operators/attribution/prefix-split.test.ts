/**
 * LIG with the α-independent prefix split off (onnx/backward/prefix-split.ts: the integrand rows
 * run the suffix graph, fed the cut tensors of the activation run) equals LIG on the full graph:
 * stories260K-onnx at layers 0, 2, 4 (first, middle, last) with padded mixed-length batches and
 * grouped by length, and every folder of ../shared/models/exporters at its first, middle and last
 * site as the pipeline plans it (GQA, GroupQueryAttention contrib ops, Gemm/flat OPT sites, past
 * inputs). The two paths run the same ops on the same values except where ORT fuses or blocks the
 * kernels differently across the cut (another graph, other batch sizes): float32 reassociation, so
 * the bound is |Δ| ≤ 1e-5 · max|attr| + 1e-7 per example and 1e-5 on F (the bound lig-flat.test.ts
 * uses for two graphs of one function), far below the 1e-2 completeness the results are held to.
 * Every float export splits; refused splits (exporter-quantized kernels, weights in the graph) say why.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { sharedPath } from '../../helpers/shared.ts';
import { loadTokenizer } from '../../../sources/tokenizer.ts';
import { attributeBatch, attributeByLength, attributionRowBytes, createAttributionSession, type AttributionSession, type LigResult } from '../../../operators/attribution/lig.ts';
import { cutRowBytes } from '../../../onnx/backward/prefix-split.ts';
import { CutValues } from '../../../operators/attribution/cut-values.ts';
import { buildFeeds } from '../../../onnx/feeds.ts';
import { overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import ort from 'onnxruntime-node';
import { EXPORTERS_REL, exporterFolders, planFor, tokenRows } from '../../models/exporter-checks.ts';
import { releasePlan } from '../../../pipelines/plan.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { readGraphQuantization } from '../../../onnx/quantize/graph-settings.ts';

function sameAttributions(a: LigResult[], b: LigResult[], what: string): number {
  let worst = 0;
  a.forEach((r, i) => {
    let scale = 0;
    let diff = 0;
    r.attributions.forEach((v, j) => {
      scale = Math.max(scale, Math.abs(b[i].attributions[j]));
      diff = Math.max(diff, Math.abs(v - b[i].attributions[j]));
    });
    assert.is(r.target, b[i].target, `${what} row ${i}: target`);
    assert.ok(scale > 0, `${what} row ${i}: non-trivial attributions`);
    assert.ok(diff <= 1e-5 * scale + 1e-7, `${what} row ${i}: prefix vs full attributions differ by ${diff} (scale ${scale})`);
    assert.ok(Math.abs(r.F_input - b[i].F_input) <= 1e-5 && Math.abs(r.F_baseline - b[i].F_baseline) <= 1e-5, `${what} row ${i}: F`);
    assert.ok(Math.abs(r.completenessError - b[i].completenessError) <= 1e-4, `${what} row ${i}: completeness`);
    worst = Math.max(worst, diff / scale);
  });
  return worst;
}

const stories = sharedPath('models/stories260K-onnx', 'LIG prefix split on stories260K');

test('stories260K layers 0, 2, 4: prefix split == full graph (padded batch and grouped by length)', async () => {
  if (!stories) return;
  const tok = await loadTokenizer(stories);
  const prompts = ['Is the sky blue?', 'Do cats bark at night?', 'Is water wet?', 'Can a fish fly over the moon?', 'Is ice cold?'];
  const examples = prompts.map((q) => ({ ids: tok.encode(`Respond with True or False only.\n${q}\nAnswer:`) }));
  assert.ok(new Set(examples.map((e) => e.ids.length)).size > 2, 'mixed lengths');
  for (const layer of [0, 2, 4]) {
    const tensor = `/model/layers.${layer}/mlp/act_fn/Mul_output_0`;
    const split = await createAttributionSession(path.join(stories, 'model.onnx'), tensor, { prefix: 'always' });
    const full = await createAttributionSession(path.join(stories, 'model.onnx'), tensor, { prefix: false });
    assert.ok(split.prefix, `layer ${layer}: split (${split.prefixRefused})`);
    assert.is(split.prefixRefused, undefined);
    assert.is(full.prefix, undefined);
    assert.match(full.prefixRefused!, 'off');
    assert.ok(split.prefix.cut.length > 0 && split.prefix.cut.every((c) => c.batchAxis === 0 || c.batchAxis === null), `layer ${layer}: cut ${split.prefix.cut.map((c) => c.name)}`);
    assert.ok(split.prefix.prefixNodes > 0 && split.prefix.suffixNodes > 0);
    const opts = { steps: 12, onWarning: () => {} };
    // Padded: one left-padded batch of mixed lengths, small chunks so rows of several examples share runs.
    const a = await attributeBatch(split, examples, tensor, { ...opts, maxBatchElements: 7 * 30 * 512 });
    const b = await attributeBatch(full, examples, tensor, { ...opts, maxBatchElements: 7 * 30 * 512 });
    const pad = sameAttributions(a, b, `layer ${layer} padded`);
    const c = await attributeByLength(split, examples, tensor, opts);
    const d = await attributeByLength(full, examples, tensor, opts);
    const grouped = sameAttributions(c, d, `layer ${layer} by length`);
    console.log(`stories260K layer ${layer}: cut ${split.prefix.cut.length} tensors, prefix ${split.prefix.prefixNodes} / suffix ${split.prefix.suffixNodes} nodes; max rel diff padded ${pad.toExponential(2)}, by length ${grouped.toExponential(2)}`);
    for (const s of [split, full]) {
      await s.session.release();
      await s.prefix?.session.release();
    }
  }
});

test('prepacked (the suffix packs its weights, the full graph stays unpacked): prefix split == full graph, stories260K layers 0, 2, 4', async () => {
  if (!stories) return;
  const tok = await loadTokenizer(stories);
  const examples = ['Is the sky blue?', 'Do cats bark at night?', 'Can fish fly?'].map((q) => ({ ids: tok.encode(`Respond with True or False only.\n${q}\nAnswer:`) }));
  for (const layer of [0, 2, 4]) {
    const tensor = `/model/layers.${layer}/mlp/act_fn/Mul_output_0`;
    const split = await createAttributionSession(path.join(stories, 'model.onnx'), tensor, { prepack: true, prefix: 'always' });
    const full = await createAttributionSession(path.join(stories, 'model.onnx'), tensor, { prepack: true, prefix: false });
    assert.ok(split.prefix && split.prepacked);
    const opts = { steps: 12, onWarning: () => {} };
    sameAttributions(await attributeByLength(split, examples, tensor, opts), await attributeByLength(full, examples, tensor, opts), `prepacked layer ${layer}`);
    for (const s of [split, full]) {
      await s.session.release();
      await s.prefix?.session.release();
    }
  }
});

test('budget: a row counts its fed cut tensors, as many bytes as a run is fed', async () => {
  if (!stories) return;
  const tensor = '/model/layers.1/mlp/act_fn/Mul_output_0';
  const s = await createAttributionSession(path.join(stories, 'model.onnx'), tensor, { prefix: 'always' });
  assert.ok(s.prefix);
  for (const S of [6, 11]) {
    const perRow = cutRowBytes(s.prefix.cut, S);
    // The residual stream [S, 64] alone is S·64·4 bytes per row.
    assert.ok(perRow >= S * 64 * 4, `cut bytes ${perRow}`);
    assert.is(attributionRowBytes(S, s.width, s.vocab, perRow), attributionRowBytes(S, s.width, s.vocab) + perRow);
    // What an integrand run of 3 rows is actually fed: the cut tensors fetched for 2 examples, rows 0, 1, 0.
    const rows = [Int32Array.from({ length: S }, (_, j) => 1 + j), Int32Array.from({ length: S - 2 }, (_, j) => 3 + j)];
    const feeds = buildFeeds(s.plan, { seqLen: S, lengths: Int32Array.from(rows.map((r) => r.length)), ids: rows }, 0);
    feeds[overrideName(tensor)] = new ort.Tensor('float32', new Float32Array(2 * S * s.width), [2, S, s.width]);
    feeds[TARGET_INPUT] = new ort.Tensor('int64', BigInt64Array.from([-1n, -1n]), [2]);
    const out = await s.session.run(feeds, s.prefix.cut.map((c) => c.name));
    const cut = new CutValues(s.prefix.cut, 2, S);
    cut.take(out, 0, 2);
    const fed = cut.feeds([0, 1, 0]);
    const batched = s.prefix.cut.filter((c) => c.batchAxis !== null).reduce((a, c) => a + (fed[c.name].data as Float32Array).byteLength, 0);
    assert.is(batched, 3 * perRow, `S ${S}: fed ${batched} B for 3 rows`);
    // Row 2 is example 0's values again.
    for (const c of s.prefix.cut.filter((x) => x.batchAxis === 0)) {
      const d = fed[c.name].data as Float32Array;
      const n = d.length / 3;
      assert.equal(Array.from(d.subarray(2 * n)), Array.from(d.subarray(0, n)), c.name);
      assert.equal(Array.from(d.subarray(n, 2 * n)), Array.from((out[c.name].data as Float32Array).subarray(n, 2 * n)), c.name);
    }
  }
  await s.session.release();
  await s.prefix.session.release();
});

test('where the prefix is a small share of the graph (stories260K layer 0), the default does not split, and says why', async () => {
  if (!stories) return;
  const low = await createAttributionSession(path.join(stories, 'model.onnx'), '/model/layers.0/mlp/act_fn/Mul_output_0');
  assert.is(low.prefix, undefined);
  assert.match(low.prefixRefused!, "of the graph's nodes");
  const high = await createAttributionSession(path.join(stories, 'model.onnx'), '/model/layers.2/mlp/act_fn/Mul_output_0');
  assert.ok(high.prefix, high.prefixRefused);
  for (const s of [low, high]) {
    await s.session.release();
    await s.prefix?.session.release();
  }
});

test('weights in the graph (an in-memory model): no split, and the session says why', async () => {
  if (!stories) return;
  const s = await createAttributionSession(readOnnxModel(new Uint8Array(readFileSync(path.join(stories, 'model.onnx')))), '/model/layers.1/mlp/act_fn/Mul_output_0');
  assert.is(s.prefix, undefined);
  assert.match(s.prefixRefused!, 'referenced');
  await s.session.release();
});

const folders = sharedPath(EXPORTERS_REL, 'LIG prefix split on the exporter matrix') ? exporterFolders()! : [];
for (const dir of folders.filter((d) => !process.env.ONLY || d.includes(process.env.ONLY))) {
  test(`${path.basename(dir)}: prefix split == full graph at the first, middle and last site`, async () => {
    const plan = await planFor(dir, ['predictions']);
    try {
      const file = plan.precisions[0].path;
      const examples = tokenRows([9, 6, 9, 4]).map((ids) => ({ ids }));
      for (const site of plan.sites) {
        const common = { settings: plan.session, padId: plan.tokenizer.padId, externalDataDir: path.dirname(file), inputPlan: plan.runners[0].plan };
        const split = await createAttributionSession(file, site.tensor, { ...common, prefix: 'always' });
        const full = await createAttributionSession(file, site.tensor, { ...common, prefix: false });
        const opts = { steps: 8, onWarning: () => {} };
        const a = await attributeByLength(split, examples, site.tensor, opts);
        const b = await attributeByLength(full, examples, site.tensor, opts);
        let worst = sameAttributions(a, b, `${path.basename(dir)} layer ${site.layer}`);
        if (!split.unpadded) {
          // One padded batch of mixed lengths (the plan's padding side), rows of several examples per run.
          const c = await attributeBatch(split, examples, site.tensor, { ...opts, maxBatchElements: 5 * 9 * 512 });
          const d = await attributeBatch(full, examples, site.tensor, { ...opts, maxBatchElements: 5 * 9 * 512 });
          worst = Math.max(worst, sameAttributions(c, d, `${path.basename(dir)} layer ${site.layer} padded`));
        }
        if (!split.prefix) assert.ok(split.prefixRefused && split.prefixRefused.length > 10, 'a refused split says why');
        // Every float export splits; exporter-quantized kernels are refused (graph-cache.ts prefixSplit).
        const m = readOnnxModel(file);
        const quantized = readGraphQuantization(m).formats.length > 0;
        m.source.close();
        if (quantized) assert.match(split.prefixRefused ?? '', 'exporter-quantized');
        else assert.ok(split.prefix, `${path.basename(dir)} layer ${site.layer}: split (${split.prefixRefused})`);
        console.log(`${path.basename(dir)} layer ${site.layer}${split.flat ? ' (flat site)' : ''}${split.unpadded ? ' (unpadded)' : ''}: ${split.prefix ? `cut ${split.prefix.cut.map((c) => `[${c.dims5}]@${c.batchAxis}`).join(' ')}, prefix ${split.prefix.prefixNodes} / suffix ${split.prefix.suffixNodes} nodes` : `no split: ${split.prefixRefused}`}; max rel diff ${worst.toExponential(2)}`);
        for (const s of [split, full]) {
          await s.session.release();
          await s.prefix?.session.release();
        }
      }
    } finally {
      await releasePlan(plan);
    }
  });
}

test.run();
