/**
 * writeReport end to end on generated run folders: every figure and table present, every number
 * shown equal to the fixture's Parquet/summary values (recomputed here by brute force where the
 * report aggregates), demo title, partial runs without empty panels, multi-run comparison.
 */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeReport } from '../../../sinks/report/index.ts';
import { makeRun, type Fixture } from './fixture.ts';
import { assertShownCompact, assertShownCount, assertShownFraction, assertShownReal, figureHtml, marks, tableHtml } from './html-marks.ts';
import { tempDir } from '../../helpers/temp.ts';

const FIGURES = ['fig1-accuracy', 'fig2-confidence', 'fig3-ace', 'fig3-reliability', 'fig4-correlation', 'fig4b-correlation-layers', 'fig5-dead', 'fig6-salient', 'fig7-completeness'];
const FRACTION_METRICS = new Set(['top1_agreement', 'cosine_mean', 'dead_jaccard', 'salient_jaccard']);
const COUNT_METRICS = new Set(['flips_correct_to_wrong', 'flips_wrong_to_correct']);

/** Brute force: pairs per precision and bin (lo ≥ 0.3) summed over layers; undefined pairs per precision. */
function expectedCorrelation(f: Fixture) {
  const pairs = new Map<string, number>();
  const undef = new Map<string, number>();
  for (const r of f.correlation) {
    if (r.bin_lo === null) { undef.set(r.precision, (undef.get(r.precision) ?? 0) + r.pairs); continue; }
    if (r.bin_lo < 0.3 - 1e-12) continue;
    const k = `${r.precision}|${r.bin_lo}`;
    pairs.set(k, (pairs.get(k) ?? 0) + r.pairs);
  }
  return { pairs, undef };
}

/** No <g class="panel"> without a mark and no table without a data cell: nothing drawn empty. */
function assertNoEmptyPanels(html: string): void {
  const panels = html.split('<g class="panel"').slice(1);
  // Each chunk runs from one panel's start to the next panel or the end of its SVG.
  for (const p of panels) assert.ok(p.split('</svg>')[0].includes('class="mark"'), 'a panel has no marks');
  for (const t of html.split('<table').slice(1)) assert.ok(t.slice(0, t.indexOf('</table>')).includes('<td'), 'a table has no cells');
  assert.ok(!/<section id="figures"><h2>Figures<\/h2>\s*<\/section>/.test(html), 'empty figures section');
}

test('full run: all figures, standalone SVGs, and atomic writes leave no temporaries', async () => {
  const f = makeRun({ seed: 7 });
  const res = await writeReport([f.dir]);
  assert.equal(res.html, path.join(f.dir, 'report.html'));
  assert.deepEqual(res.figures, FIGURES.map((id) => path.join(f.dir, 'figures', `${id}.svg`)));
  const html = readFileSync(res.html, 'utf8');
  for (const id of FIGURES) {
    assert.ok(figureHtml(html, id), `figure ${id} missing from HTML`);
    const svg = readFileSync(path.join(f.dir, 'figures', `${id}.svg`), 'utf8');
    assert.match(svg, /^<\?xml [^>]*\?>\n<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.ok(html.includes(svg.split('\n')[1]), `${id}: inline SVG differs from figures/${id}.svg`);
  }
  // Offline and script-free: no scripts, no external references.
  assert.ok(!/<script/i.test(html));
  assert.ok(!/(src|href)="(https?:)?\/\//i.test(html));
  assert.ok(!/url\(/i.test(html));
  assert.ok(!/\.tmp-/.test(readdirSync(f.dir).join(' ') + readdirSync(path.join(f.dir, 'figures')).join(' ')));
  assertNoEmptyPanels(html);
});

test('figures 1–3a: each bar shows the summary value and its interval', async () => {
  const f = makeRun({ seed: 11 });
  const { html } = await writeReport([f.dir]).then((r) => ({ html: readFileSync(r.html, 'utf8') }));
  for (const [fig, metric, ci] of [['fig1-accuracy', 'accuracy', 'accuracy_ci'], ['fig2-confidence', 'mean_confidence', null], ['fig3-ace', 'ace', 'ace_ci']] as const) {
    const ms = marks(figureHtml(html, fig)!);
    assert.equal(ms.length, 3, `${fig}: one bar per precision`);
    for (const p of ['fp32', 'int8', 'nf4']) {
      const m = ms.find((x) => x.attrs['data-precision'] === p)!;
      const expected = f.summary.precisions[p][metric];
      assert.equal(m.attrs['data-metric'], metric);
      assert.equal(Number(m.attrs['data-value']), expected, `${fig} ${p}`);
      assertShownFraction(m.shown, expected, `${fig} ${p}`);
      if (ci) {
        assert.equal(Number(m.attrs['data-lo']), f.summary.precisions[p][ci][0]);
        assert.equal(Number(m.attrs['data-hi']), f.summary.precisions[p][ci][1]);
      }
    }
  }
  // Accuracy in the summary is what the predictions say (fixture invariant the figure relies on).
  for (const p of ['fp32', 'int8', 'nf4']) {
    const rows = f.predictions.filter((r) => r.precision === p);
    assert.equal(f.summary.precisions[p].accuracy, rows.filter((r) => r.correct).length / rows.length);
  }
});

test('figure 3b: reliability bars are the non-empty equal-width bins', async () => {
  const f = makeRun({ seed: 12 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const ms = marks(figureHtml(html, 'fig3-reliability')!);
  for (const p of ['fp32', 'int8', 'nf4']) {
    const expected = f.calibration.filter((b) => b.precision === p && b.scheme === 'equal-width' && b.count > 0);
    const got = ms.filter((m) => m.attrs['data-precision'] === p);
    assert.equal(got.length, expected.length, `${p}: empty bins must not be drawn`);
    for (const b of expected) {
      const m = got.find((x) => Number(x.attrs['data-bin']) === b.bin)!;
      assert.ok(m, `${p} bin ${b.bin} missing`);
      assert.equal(m.attrs['data-scheme'], 'equal-width');
      assert.equal(Number(m.attrs['data-value']), b.accuracy);
      assert.equal(Number(m.attrs['data-confidence']), b.mean_confidence);
      assert.equal(Number(m.attrs['data-count']), b.count);
    }
  }
});

test('figure 4: pairs per bin ≥ 0.3 summed over layers, compact labels, undefined pairs noted', async () => {
  const f = makeRun({ seed: 13 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const fig = figureHtml(html, 'fig4-correlation')!;
  const { pairs, undef } = expectedCorrelation(f);
  const bars = marks(fig).filter((m) => m.attrs['data-metric'] === 'pairs');
  assert.equal(bars.length, pairs.size, 'one bar per precision and bin ≥ 0.3');
  for (const [k, v] of pairs) {
    const [p, lo] = k.split('|');
    const m = bars.find((x) => x.attrs['data-precision'] === p && Number(x.attrs['data-bin-lo']) === Number(lo))!;
    assert.ok(m, `bar ${k} missing`);
    assert.equal(Number(m.attrs['data-value']), v);
    assertShownCompact(m.shown, v, `fig4 ${k}`);
  }
  assert.ok(bars.some((m) => /M$/.test(m.shown!)) || bars.some((m) => /K$/.test(m.shown!)), 'fixture exercises compact labels');
  const notes = marks(fig).filter((m) => m.attrs['data-metric'] === 'undefined_pairs');
  assert.equal(notes.length, undef.size);
  for (const n of notes) assert.equal(Number(n.attrs['data-value']), undef.get(n.attrs['data-precision']));
});

test('tables: dead, salient, agreement, activation statistics and metadata equal the files', async () => {
  const f = makeRun({ seed: 21 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');

  const dead = marks(tableHtml(html, 'dead')!);
  assert.equal(dead.length, f.dead.length);
  for (const r of f.dead) {
    const m = dead.find((x) => x.attrs['data-precision'] === r.precision && Number(x.attrs['data-layer']) === r.layer)!;
    assert.equal(Number(m.attrs['data-value']), r.dead_count);
    assert.equal(Number(m.attrs['data-total']), r.total);
    assert.equal(m.shown, `${r.dead_count} / ${r.total}`);
  }

  const salient = marks(tableHtml(html, 'salient')!);
  for (const r of salient) {
    // Brute force from salience.parquet rows: neurons salient for at least one example.
    const expected = f.salience.filter((s) => s.precision === r.attrs['data-precision'] && s.layer === Number(r.attrs['data-layer']) && s.salient_examples > 0).length;
    assert.equal(Number(r.attrs['data-value']), expected);
    assertShownCount(r.shown, expected, 'salient');
  }
  assert.equal(salient.length, 6);

  const agreement = [...marks(tableHtml(html, 'agreement-output')!), ...marks(tableHtml(html, 'agreement-layers')!)];
  assert.equal(agreement.length, f.agreement.length);
  for (const a of f.agreement) {
    const layer = a.layer === null ? 'output' : String(a.layer);
    const m = agreement.find((x) => x.attrs['data-metric'] === a.metric && x.attrs['data-precision'] === a.precision && x.attrs['data-layer'] === layer)!;
    assert.ok(m, `agreement ${a.metric} ${a.precision} ${layer} missing`);
    assert.equal(m.attrs['data-reference'], a.reference);
    assert.equal(Number(m.attrs['data-value']), a.value);
    if (FRACTION_METRICS.has(a.metric)) assertShownFraction(m.shown, a.value, a.metric);
    else if (COUNT_METRICS.has(a.metric)) assertShownCount(m.shown, a.value, a.metric);
    else assertShownReal(m.shown, a.value, a.metric);
  }

  const neurons = marks(tableHtml(html, 'neurons')!);
  for (const layer of [0, 3]) for (const p of ['fp32', 'int8', 'nf4']) {
    const rows = f.neurons.filter((n) => n.layer === layer && n.precision === p);
    const mean = (k: 'mean' | 'variance' | 'near_zero_fraction') => rows.reduce((a, n) => a + n[k], 0) / rows.length;
    const get = (metric: string) => neurons.find((x) => x.attrs['data-metric'] === metric && x.attrs['data-precision'] === p && Number(x.attrs['data-layer']) === layer)!;
    assertShownCount(get('neurons').shown, rows.length, 'neurons');
    assert.ok(Math.abs(Number(get('mean_activation').attrs['data-value']) - mean('mean')) < 1e-12);
    assertShownReal(get('mean_activation').shown, mean('mean'), 'mean activation');
    assertShownReal(get('mean_variance').shown, mean('variance'), 'mean variance');
    assertShownFraction(get('near_zero_fraction').shown, mean('near_zero_fraction'), 'near zero');
  }

  const precisionRows = marks(tableHtml(html, 'precisions')!);
  for (const p of ['fp32', 'int8', 'nf4']) {
    for (const k of ['examples', 'tokens', 'accuracy', 'mean_confidence', 'ace', 'ece', 'mce']) {
      const m = precisionRows.find((x) => x.attrs['data-metric'] === k && x.attrs['data-precision'] === p)!;
      assert.equal(Number(m.attrs['data-value']), f.summary.precisions[p][k], `${p} ${k}`);
    }
  }

  const meta = tableHtml(html, 'metadata')!;
  for (const s of [f.summary.model.path, f.summary.model.hash, f.summary.dataset.path, f.summary.ort.version, 'intra_op_num_threads=2', 'block_size=64', 'scheme=nf4']) {
    assert.ok(meta.includes(s), `metadata lacks ${s}`);
  }
  const metaMarks = marks(meta);
  for (const [field, v] of [['truncated', 3], ['dataset.examples', 40]] as const) {
    const m = metaMarks.find((x) => x.attrs['data-field'] === field)!;
    assert.equal(Number(m.attrs['data-value']), v, field);
    assertShownReal(m.shown!.replace(/,/g, ''), v, field);
  }
  // Wall-clock numbers differ between identical runs: they stay in summary.json, not in the report.
  for (const field of ['wall_seconds', 'tokens_per_second']) assert.ok(!metaMarks.some((x) => x.attrs['data-field'] === field), field);
  assert.ok(!html.includes('demo model, random weights'), 'non-demo run must not say demo');
});

test('demo model: the title says "demo model, random weights"', async () => {
  const f = makeRun({ demo: true, seed: 3 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  assert.match(/<title>([^<]*)<\/title>/.exec(html)![1], /demo model, random weights/);
  assert.match(/<h1[^>]*>([^<]*)<\/h1>/.exec(html)![1], /demo model, random weights/);
});

test('partial run (summary + predictions only): figures 1–3a only, no empty panel', async () => {
  const f = makeRun({ parts: ['summary', 'predictions'], seed: 4 });
  const res = await writeReport([f.dir]);
  const html = readFileSync(res.html, 'utf8');
  // summary.json carries the salient counts per layer, so their figure is drawn too.
  assert.deepEqual(res.figures.map((p) => path.basename(p, '.svg')), ['fig1-accuracy', 'fig2-confidence', 'fig3-ace', 'fig6-salient', 'fig7-completeness']);
  for (const id of ['fig3-reliability', 'fig4-correlation']) assert.equal(figureHtml(html, id), null);
  for (const t of ['dead', 'agreement-output', 'agreement-layers', 'neurons']) assert.equal(tableHtml(html, t), null, t);
  assertNoEmptyPanels(html);
});

test('partial run: metrics missing from summary are recomputed from predictions.parquet', async () => {
  const f = makeRun({ parts: ['summary', 'predictions'], summaryWithoutMetrics: true, seed: 5 });
  const res = await writeReport([f.dir]);
  const html = readFileSync(res.html, 'utf8');
  assert.deepEqual(res.figures.map((p) => path.basename(p, '.svg')), ['fig1-accuracy', 'fig2-confidence', 'fig6-salient', 'fig7-completeness']);
  for (const [fig, metric] of [['fig1-accuracy', 'accuracy'], ['fig2-confidence', 'mean_confidence']] as const) {
    for (const m of marks(figureHtml(html, fig)!)) {
      const rows = f.predictions.filter((r) => r.precision === m.attrs['data-precision']);
      let sum = 0;
      for (const r of rows) sum += metric === 'accuracy' ? (r.correct ? 1 : 0) : r.confidence;
      assert.ok(Math.abs(Number(m.attrs['data-value']) - sum / rows.length) < 1e-12, `${fig} ${m.attrs['data-precision']}`);
      assert.equal(m.attrs['data-source'], 'predictions');
      assertShownFraction(m.shown, sum / rows.length, fig);
    }
  }
  assertNoEmptyPanels(html);
});

test('partial run (neurons only): no figures at all, the activation table, folder name as title', async () => {
  const f = makeRun({ parts: ['neurons'], seed: 6 });
  const res = await writeReport([f.dir]);
  const html = readFileSync(res.html, 'utf8');
  assert.deepEqual(res.figures, []);
  assert.ok(!html.includes('<figure'));
  assert.ok(!html.includes('id="figures"'));
  assert.ok(!existsSync(path.join(f.dir, 'figures')));
  assert.ok(tableHtml(html, 'neurons'));
  assert.ok(html.includes(path.basename(f.dir)));
  assertNoEmptyPanels(html);
});

test('comparison: models × datasets side by side, one panel per dataset, one group per model', async () => {
  const runs: Fixture[] = [];
  let seed = 100;
  for (const model of ['/m/stories260K-onnx', '/m/tiny-random-llama']) {
    for (const dataset of ['/d/boolq.csv', '/d/piqa.csv']) {
      runs.push(makeRun({ modelPath: model, datasetPath: dataset, name: `${path.basename(model)}-${path.basename(dataset, '.csv')}`, seed: seed++, parts: ['summary', 'predictions', 'calibration', 'correlation', 'dead'] }));
    }
  }
  const out = tempDir('quantlens-compare-');
  const res = await writeReport(runs.map((r) => r.dir), { out });
  assert.equal(res.html, path.join(out, 'comparison.html'));
  assert.ok(res.figures.every((p) => path.basename(p).startsWith('comparison-') && existsSync(p)));
  for (const r of runs) assert.ok(!existsSync(path.join(r.dir, 'report.html')), 'a comparison must not write into the runs');
  const html = readFileSync(res.html, 'utf8');
  const fig1 = figureHtml(html, 'fig1-accuracy')!;
  const titles = [...fig1.matchAll(/class="panel-title"[^>]*>([^<]*)</g)].map((m) => m[1]);
  assert.deepEqual(titles, ['boolq', 'piqa']);
  const ms = marks(fig1);
  assert.equal(ms.length, runs.length * 3);
  for (const r of runs) {
    for (const p of ['fp32', 'int8', 'nf4']) {
      const m = ms.find((x) => x.attrs['data-run'] === r.summary.name && x.attrs['data-precision'] === p)!;
      assert.equal(Number(m.attrs['data-value']), r.summary.precisions[p].accuracy);
      assert.equal(m.attrs['data-model'], path.basename(r.summary.model.path));
      assert.equal(m.attrs['data-dataset'], path.basename(r.summary.dataset.path, '.csv'));
    }
    // Per-run tables carry that run's numbers.
    const dead = marks(tableHtml(html, 'dead', r.summary.name)!);
    for (const d of r.dead) {
      const m = dead.find((x) => x.attrs['data-precision'] === d.precision && Number(x.attrs['data-layer']) === d.layer)!;
      assert.equal(Number(m.attrs['data-value']), d.dead_count);
    }
    const fig4 = marks(figureHtml(html, 'fig4-correlation')!).filter((m) => m.attrs['data-run'] === r.summary.name && m.attrs['data-metric'] === 'pairs');
    const { pairs } = expectedCorrelation(r);
    assert.equal(fig4.length, pairs.size);
    for (const m of fig4) assert.equal(Number(m.attrs['data-value']), pairs.get(`${m.attrs['data-precision']}|${Number(m.attrs['data-bin-lo'])}`));
  }
  assert.equal(marks(figureHtml(html, 'fig3-reliability')!).filter((m) => m.attrs['data-precision'] === 'nf4').length,
    runs.reduce((a, r) => a + r.calibration.filter((b) => b.precision === 'nf4' && b.scheme === 'equal-width' && b.count > 0).length, 0));
  assertNoEmptyPanels(html);
});

test('text from the files is escaped in HTML and SVG', async () => {
  const evil = `<script>alert("x")</script> & 'q'`;
  const f = makeRun({ name: evil, modelPath: `/m/<b>model</b>`, parts: ['summary', 'predictions'], seed: 8 });
  const res = await writeReport([f.dir]);
  const html = readFileSync(res.html, 'utf8');
  assert.ok(!html.includes('<script>'));
  assert.ok(!html.includes('<b>model'));
  assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;'));
  for (const p of res.figures) assert.ok(!readFileSync(p, 'utf8').includes('<b>'));
});

test('a folder with no run outputs is an IO error naming the folder', async () => {
  const dir = tempDir('quantlens-empty-');
  await assert.rejects(writeReport([dir]), (e: any) => e.code === 'IO' && e.message.includes(dir));
  await assert.rejects(writeReport([path.join(dir, 'missing')]), (e: any) => e.code === 'IO');
  await assert.rejects(writeReport([]), (e: any) => e.code === 'CONFIG');
});

test.run();
