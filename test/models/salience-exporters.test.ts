/**
 * Salience (Layer Integrated Gradients) on every model folder of ../shared/models/exporters/,
 * listed at runtime so new folders are covered. Per folder:
 *  - a pipeline with `measure: salience` (`salience.adaptive: true`) at fp32 and nf4, layers
 *    first and last, 3 BoolQ prompts: completeness error per (precision, layer) printed, every
 *    median < 1%, salience.parquet one finite row per neuron of each captured layer;
 *    a folder whose own weights are already quantized (genai-llama-int4) runs as its own
 *    precision (named by its folder's tag) beside its float sibling (the same name with the tag
 *    replaced by fp32) through a per-precision model path, with every measure and agreement;
 *  - the gradient at the first captured layer (as the pipeline plans it: padding side, past
 *    layout, flat [B·T, d_ff] sites) equals central differences on a padded batch of two.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { releasePlan } from '../../pipelines/plan.ts';
import { readOnnxModel } from '../../onnx/model-reader.ts';
import { readGraphQuantization } from '../../onnx/quantize/graph-settings.ts';
import { buildFeeds } from '../../onnx/feeds.ts';
import { gradName, OBJECTIVE_OUTPUT, overrideName, originalName, TARGET_INPUT } from '../../onnx/backward/graph.ts';
import { createAttributionSession } from '../../operators/attribution/lig.ts';
import { openModelFolder } from '../../sources/model/folder.ts';
import { mulberry32 } from '../../core/random.ts';
import { BOOLQ, EXPORTERS_REL, exporterFolders, planFor, tokenRows } from './exporter-checks.ts';
import { fdAgrees, plusMinus } from '../onnx/backward/fd-harness.ts';

const folders = sharedPath(EXPORTERS_REL, 'salience exporter matrix') && sharedPath('datasets/boolq.csv', 'salience exporter matrix') ? exporterFolders()! : [];
const LIMIT = 3;
const ALL = ['predictions', 'neurons', 'dead', 'correlation', 'calibration', 'agreement', 'salience'];

/** True when the folder's own graph already holds quantized linear weights (read from the graph). */
async function alreadyQuantized(dir: string): Promise<boolean> {
  const m = readOnnxModel((await openModelFolder(dir)).onnxPath);
  try {
    return readGraphQuantization(m).formats.length > 0;
  } finally {
    m.source.close();
  }
}

interface Row {
  model: string;
  precisions: string[];
  measure: string[];
}

/** What the pipeline runs for this folder: fp32 + nf4, or (quantized folder) its float sibling + itself. */
async function rowFor(dir: string): Promise<Row> {
  if (!(await alreadyQuantized(dir))) return { model: dir, precisions: ['fp32', 'nf4'], measure: ['predictions', 'salience'] };
  const name = path.basename(dir);
  const tag = name.split('-').at(-1)!;
  const sibling = path.join(path.dirname(dir), name.replace(/-[^-]+$/, '-fp32'));
  assert.ok(existsSync(sibling) && !(await alreadyQuantized(sibling)), `${name}: already quantized, and no float sibling ${path.basename(sibling)} to compare with`);
  return { model: sibling, precisions: ['fp32', `{name: ${tag}, model: ${dir}}`], measure: ALL };
}

function yaml(row: Row, out: string): string {
  return [
    `model: ${row.model}`,
    `precisions: [${row.precisions.join(', ')}]`,
    'dataset:',
    `  path: ${BOOLQ}`,
    '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
    `  limit: ${LIMIT}`,
    'layers: [first, last]',
    `measure: [${row.measure.join(', ')}]`,
    'salience: {steps: 16, adaptive: true}',
    'calibration: {bootstrap: 20}',
    `output: ${out}`,
  ].join('\n');
}

/**
 * Central differences of Σ_b objective[b] at the override against the graph's gradient: the 12
 * largest |grad| and 20 random coordinates, h = 1e-2, else h = 3e-3 (a ReLU kink within ±h bends
 * one side; a wrong rule is off at both). Coordinates whose one-sided differences still disagree
 * (a kink within ±h/3) have no derivative there and are skipped (at most a quarter).
 */
async function fdCheck(dir: string): Promise<string> {
  const plan = await planFor(dir, ['predictions']);
  try {
    const site = plan.sites[0];
    const file = plan.precisions[0].path;
    const s = await createAttributionSession(file, site.tensor, { settings: plan.session, padId: plan.tokenizer.padId, externalDataDir: path.dirname(file), inputPlan: plan.runners[0].plan });
    try {
      const rows = tokenRows([7, 4]);
      const S = 7;
      const feeds = buildFeeds(s.plan, { seqLen: S, lengths: Int32Array.from([7, 4]), ids: rows }, plan.tokenizer.padId);
      const dims = s.flat ? [2 * S, s.width] : [2, S, s.width];
      const target = new ort.Tensor('int64', BigInt64Array.from([5n, 300n]), [2]);
      const run = async (x: Float32Array) => {
        const out = await s.session.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(site.tensor)]: new ort.Tensor('float32', x, dims) });
        const F = out[OBJECTIVE_OUTPUT].data as Float32Array;
        return { F: F[0] + F[1], g: out[gradName(site.tensor)].data as Float32Array, a: out[originalName(site.tensor)].data as Float32Array };
      };
      const a = (await run(new Float32Array(2 * S * s.width))).a.slice();
      const base = await run(a);
      // Padded positions get no gradient worth testing; pick among the real ones.
      const real = (i: number) => {
        const b = Math.floor(i / (S * s.width));
        const t = Math.floor(i / s.width) % S;
        return s.plan.padSide === 'right' ? t < rows[b].length : t >= S - rows[b].length;
      };
      const order = Array.from(base.g.keys()).filter(real).sort((p, q) => Math.abs(base.g[q]) - Math.abs(base.g[p]));
      const coords = new Set(order.slice(0, 12));
      const r = mulberry32(31);
      while (coords.size < 32) coords.add(order[Math.floor(r() * order.length)]);
      const bad: string[] = [];
      let kinks = 0;
      for (const i of coords) {
        // A ReLU kink within ±h bends one side: then h/3 is tried (a wrong rule is off at both).
        let verdict: 'ok' | 'kink' | string = 'kink';
        for (const h of [1e-2, 3e-3]) {
          const [fp, fm] = await plusMinus(async (x) => (await run(x)).F, a, i, h);
          const fd = (fp - fm) / (2 * h);
          if (fdAgrees(base.g[i], fd)) {
            verdict = 'ok';
            break;
          }
          const kink = Math.abs((fp - base.F) / h - (base.F - fm) / h) > 0.1 * Math.abs(fd) + 1e-2;
          verdict = kink ? 'kink' : `${i}: ${base.g[i]} vs ${fd} (h ${h})`;
        }
        if (verdict === 'kink') kinks++;
        else if (verdict !== 'ok') bad.push(verdict);
      }
      assert.ok(Math.abs(base.g[order[0]]) > 1e-3, `non-trivial gradient (${base.g[order[0]]})`);
      assert.ok(kinks <= coords.size / 4, `${kinks} of ${coords.size} coordinates at a kink`);
      assert.equal(bad, [], `${bad.length}/${coords.size} coordinates off`);
      return `${s.flat ? 'flat [B·T, ' + s.width + ']' : '[B, T, ' + s.width + ']'} ${site.tensor}, ${s.plan.padSide ?? 'left'} padding: ${coords.size - kinks} coordinates = central differences${kinks ? ` (${kinks} at a kink skipped)` : ''}, max |grad| ${Math.abs(base.g[order[0]]).toExponential(2)}`;
    } finally {
      await s.session.release();
    }
  } finally {
    await releasePlan(plan);
  }
}

test('the salience matrix covers every exporter folder', () => {
  if (!folders.length) return;
  assert.ok(folders.length >= 10, `${folders.length} folders`);
});

for (const dir of folders) {
  const name = path.basename(dir);

  test(`${name}: salience (LIG, adaptive) at fp32 and a quantized precision; median completeness error < 1% per layer`, async () => {
    const row = await rowFor(dir);
    const out = tempDir('ql-sal-exp-');
    const { summary } = await runPipeline(parsePipeline(yaml(row, out), path.join(out, 'p.yaml')), { quiet: true, report: false, cacheDir: path.join(out, 'cache'), log: () => undefined });
    const sal = (summary as any).salience as Record<string, Record<string, any>>;
    const sites = (summary as any).layers as { layer: number; width: number }[];
    const precisions = Object.keys(sal).sort();
    assert.is(precisions.length, 2, `${name}: two precisions attributed (${precisions})`);
    const parts: string[] = [];
    for (const p of precisions) {
      assert.equal(Object.keys(sal[p]).map(Number).sort((x, y) => x - y), sites.map((s) => s.layer), `${name} ${p}: every captured layer`);
      for (const [layer, v] of Object.entries(sal[p])) {
        const c = v.completeness;
        assert.is(c.count, LIMIT, `${name} ${p} layer ${layer}: every example attributed`);
        assert.ok([c.min, c.median, c.max].every(Number.isFinite), `${name} ${p} layer ${layer}: finite completeness`);
        assert.ok(c.median < 0.01, `${name} ${p} layer ${layer}: median completeness error ${c.median}`);
        parts.push(`${p} L${layer} median ${c.median.toExponential(2)} max ${c.max.toExponential(2)}`);
      }
    }
    console.log(`  ${name}${row.model !== dir ? ` (vs ${path.basename(row.model)})` : ''}: ${parts.join('; ')}`);
    const rows = await duckdbQuery(`select precision, layer, count(*)::int n, count(*) filter (where isfinite(mean_abs_attr))::int finite from '${out}/salience.parquet' group by all`);
    assert.is(rows.length, precisions.length * sites.length);
    for (const r of rows) {
      const width = sites.find((s) => s.layer === r.layer)!.width;
      assert.is(r.n, width, `${name} ${r.precision} layer ${r.layer}: one row per neuron`);
      assert.is(r.finite, width, `${name} ${r.precision} layer ${r.layer}: finite attributions`);
    }
    if (row.measure.includes('agreement')) {
      const tag = precisions.find((p) => p !== 'fp32')!;
      const agr = await duckdbQuery(`select metric, value from '${out}/agreement.parquet' where precision = '${tag}' and metric in ('kl_mean', 'salient_jaccard')`);
      const kl = agr.find((x) => x.metric === 'kl_mean' && Number.isFinite(Number(x.value)));
      assert.ok(kl && Number(kl.value) > 0, `${name}: agreement (mean KL) against fp32 reported`);
      assert.ok(agr.filter((x) => x.metric === 'salient_jaccard').every((x) => Number(x.value) >= 0 && Number(x.value) <= 1) && agr.some((x) => x.metric === 'salient_jaccard'), `${name}: salient-neuron Jaccard reported`);
      console.log(`  ${name}: agreement with ${path.basename(row.model)}: mean KL ${Number(kl!.value).toExponential(2)}`);
    }
  });

  test(`${name}: gradient at the first captured layer = central differences`, async () => {
    if (await alreadyQuantized(dir)) {
      // Its MatMulNBits nodes (accuracy_level 4) round activations to int8: the forward function
      // is piecewise constant, so differences measure rounding steps; its float sibling is checked.
      console.log(`  ${name}: own weights quantized (piecewise-constant forward); gradient checked on its float sibling`);
      return;
    }
    console.log(`  ${name}: ${await fdCheck(dir)}`);
  });
}

test.run();
