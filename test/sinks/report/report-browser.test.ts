/**
 * The report in a real browser (headless Chromium): renders offline with no console errors and no
 * network requests, every figure has a non-zero size, no two labels overlap, and the numbers the
 * page shows equal the fixture's Parquet/summary values. Saves PNG screenshots to os.tmpdir().
 * Skips with a SKIP line when /usr/bin/chromium is absent.
 */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeReport, writeSuiteReport } from '../../../sinks/report/index.ts';
import { makeRun, type Fixture } from './fixture.ts';
import { assertShownCompact, assertShownCount, assertShownFraction, assertShownPercent, type Mark } from './html-marks.ts';
import { tempDir } from '../../helpers/temp.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];
const FIGURES = ['fig1-accuracy', 'fig2-confidence', 'fig3-ace', 'fig3-reliability', 'fig4-correlation', 'fig4b-correlation-layers', 'fig5-dead', 'fig6-salient', 'fig7-completeness'];

/** A mark as the browser lays it out: its data, the number it shows, and its bar's drawn height. */
type BrowserMark = Mark & { barHeight: number };

interface PageReport {
  errors: string[];
  requests: string[];
  figureBoxes: Record<string, { width: number; height: number } | null>;
  panelSizes: number[][];
  barPanelWidths: number[];
  marks: BrowserMark[];
  overlaps: string[];
  title: string;
}

async function inspect(file: string, screenshot: string): Promise<PageReport> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    const url = 'file://' + file;
    await page.goto(url, { waitUntil: 'load' });
    const figureBoxes: PageReport['figureBoxes'] = {};
    for (const id of FIGURES) {
      const loc = page.locator(`figure#${id} > svg`);
      figureBoxes[id] = (await loc.count()) ? await loc.boundingBox() : null;
    }
    const data = await page.evaluate(() => {
      const marks = [...document.querySelectorAll('[data-metric]')].map((el) => {
        const attrs: Record<string, string> = {};
        for (const a of el.getAttributeNames()) attrs[a] = el.getAttribute(a)!;
        const label = el.tagName.toLowerCase() === 'g' ? el.querySelector('text.value-label') : el;
        const rect = el.tagName.toLowerCase() === 'g' ? el.querySelector('rect') : null;
        return { tag: el.tagName.toLowerCase(), attrs, shown: label ? label.textContent!.trim() : null, barHeight: rect ? rect.getBoundingClientRect().height : 0 };
      });
      const barPanelWidths = [...document.querySelectorAll('figure:not(#fig3-reliability) g.panel')].map((g) => (g as SVGGElement).getBoundingClientRect().width);
      const panelSizes = [...document.querySelectorAll('g.panel')].map((g) => { const b = (g as SVGGElement).getBoundingClientRect(); return [b.width, b.height]; });
      // Any two text elements of one figure whose boxes intersect by more than a pixel overlap visibly.
      const overlaps: string[] = [];
      for (const svg of document.querySelectorAll('svg.figure')) {
        const boxes = [...svg.querySelectorAll('text')].map((t) => ({ t: t.textContent ?? '', b: t.getBoundingClientRect() }));
        for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
          const a = boxes[i].b, c = boxes[j].b;
          const w = Math.min(a.right, c.right) - Math.max(a.left, c.left);
          const h = Math.min(a.bottom, c.bottom) - Math.max(a.top, c.top);
          if (w > 1 && h > 1) overlaps.push(`${svg.getAttribute('data-figure')}: "${boxes[i].t}" × "${boxes[j].t}"`);
        }
      }
      return { marks, panelSizes, barPanelWidths, overlaps, title: document.title };
    });
    await page.screenshot({ path: screenshot, fullPage: true });
    return { errors, requests: requests.filter((r) => r !== url), figureBoxes, ...data };
  } finally {
    await browser.close();
  }
}

function checkPage(r: PageReport, runs: Fixture[]): void {
  assert.deepEqual(r.errors, [], 'console errors');
  assert.deepEqual(r.requests, [], 'the page must not request anything but itself');
  for (const id of FIGURES) {
    const b = r.figureBoxes[id];
    assert.ok(b && b.width > 0 && b.height > 0, `${id} missing or zero-sized`);
  }
  assert.ok(r.panelSizes.length > 0 && r.panelSizes.every(([w, h]) => w > 0 && h > 0), 'zero-sized panel');
  // Panels are sized to the 1160 px page (four to a row at most), never the ~180 px of old.
  assert.ok(r.barPanelWidths.every((w) => w >= 240), `narrow panels: ${r.barPanelWidths.filter((w) => w < 240).map(Math.round)}`);
  assert.deepEqual(r.overlaps, [], 'overlapping labels');
  for (const f of runs) {
    const mine = r.marks.filter((m) => m.attrs['data-run'] === f.summary.name);
    for (const [metric, key] of [['accuracy', 'accuracy'], ['mean_confidence', 'mean_confidence'], ['ace', 'ace']]) {
      for (const p of ['fp32', 'int8', 'nf4']) {
        const m = mine.find((x) => x.tag === 'g' && x.attrs['data-metric'] === metric && x.attrs['data-precision'] === p)!;
        assert.ok(m, `${f.summary.name} ${metric} ${p} bar missing`);
        assert.equal(Number(m.attrs['data-value']), f.summary.precisions[p][key]);
        assertShownFraction(m.shown, f.summary.precisions[p][key], `${metric} ${p}`);
      }
    }
    // Figure 4 counts against a brute-force sum of the Parquet rows.
    for (const m of mine.filter((x) => x.attrs['data-metric'] === 'pairs')) {
      const lo = Number(m.attrs['data-bin-lo']);
      const expected = f.correlation.filter((c) => c.precision === m.attrs['data-precision'] && c.bin_lo !== null && Math.abs(c.bin_lo - lo) < 1e-12).reduce((a, c) => a + c.pairs, 0);
      assert.equal(Number(m.attrs['data-value']), expected);
      assertShownCompact(m.shown, expected, `pairs ${lo}`);
    }
    assert.equal(mine.filter((x) => x.attrs['data-metric'] === 'pairs').length, 3 * 7);
    checkLayerFigures(mine, f);
  }
}

/** Figures 4b–7 as drawn: each number against the fixture's Parquet rows and summary. */
function checkLayerFigures(mine: BrowserMark[], f: Fixture): void {
  const of = (metric: string) => mine.filter((x) => x.tag === 'g' && x.attrs['data-metric'] === metric);
  assert.equal(of('layer_dead_count').length, f.dead.length);
  for (const d of f.dead) {
    const m = of('layer_dead_count').find((x) => x.attrs['data-precision'] === d.precision && Number(x.attrs['data-layer']) === d.layer)!;
    assert.equal(Number(m.attrs['data-value']), d.dead_count);
    assertShownCount(m.shown, d.dead_count, 'dead bar');
    assert.equal(m.barHeight > 0, d.dead_count > 0, 'a dead count of 0 draws no bar, any other does');
  }
  for (const m of of('layer_union_count')) {
    const p = m.attrs['data-precision'], layer = Number(m.attrs['data-layer']);
    const expected = f.salience.filter((s) => s.precision === p && s.layer === layer && s.salient_examples > 0).length;
    const k = f.summary.salience[p][String(layer)].completeness.unconverged_example_ids.length;
    assert.equal(m.shown, k ? `${expected} ⚠${k}/8` : String(expected));
  }
  assert.equal(of('layer_union_count').length, 6);
  for (const m of of('completeness')) {
    const c = f.summary.salience[m.attrs['data-precision']][m.attrs['data-layer']].completeness;
    for (const k of ['min', 'median', 'p90', 'max']) assert.equal(Number(m.attrs[`data-${k}`]), c[k]);
    assert.equal(m.shown, `${c.unconverged_example_ids.length ? '⚠' : ''}${c.unconverged_example_ids.length}/${c.count}`);
  }
  assert.equal(of('completeness').length, 6);
  const layerPairs = of('layer_pairs');
  for (const m of layerPairs) {
    const row = f.correlation.find((c) => c.layer === Number(m.attrs['data-layer']) && c.precision === m.attrs['data-precision'] && c.bin_lo === Number(m.attrs['data-bin-lo']))!;
    assert.equal(Number(m.attrs['data-value']), row.pairs);
    assertShownCompact(m.shown, row.pairs, 'layer pairs');
  }
  assert.equal(layerPairs.length, 2 * 3 * 7);
  // Zero-safe log axis, as rendered: a bin with 0 pairs has no bar, one with 1 pair a visible one.
  const fig4 = of('pairs');
  const zero = fig4.find((m) => Number(m.attrs['data-value']) === 0)!;
  const one = fig4.find((m) => Number(m.attrs['data-value']) === 1)!;
  assert.equal(zero.barHeight, 0);
  assert.ok(one.barHeight >= 5, `1 pair drawn ${one.barHeight}px high`);
}

test('single run renders offline in Chromium with the files\' numbers', async () => {
  if (!existsSync(CHROMIUM)) { console.log(`SKIP browser report test: ${CHROMIUM} is absent (apt-get install -y chromium)`); return; }
  const f = makeRun({ demo: true, seed: 42 });
  const { html } = await writeReport([f.dir]);
  const shot = path.join(os.tmpdir(), 'quantlens-report-screenshot.png');
  const r = await inspect(html, shot);
  checkPage(r, [f]);
  assert.match(r.title, /demo model, random weights/);
  // Dead-neuron cells as the browser shows them.
  for (const d of f.dead) {
    const m = r.marks.find((x) => x.attrs['data-metric'] === 'dead_count' && x.attrs['data-precision'] === d.precision && Number(x.attrs['data-layer']) === d.layer)!;
    assert.equal(m.shown, `${d.dead_count} / ${d.total}`);
  }
  console.log(`screenshot: ${shot}`);
});

test('comparison of four runs renders with every run\'s numbers', async () => {
  if (!existsSync(CHROMIUM)) { console.log(`SKIP browser comparison test: ${CHROMIUM} is absent`); return; }
  const runs: Fixture[] = [];
  let seed = 300;
  for (const model of ['/m/stories260K-onnx', '/m/tiny-random-llama-fp16']) {
    for (const dataset of ['/d/boolq.csv', '/d/hellaswag.csv']) {
      runs.push(makeRun({ modelPath: model, datasetPath: dataset, name: `${path.basename(model)}/${path.basename(dataset, '.csv')}`, seed: seed++ }));
    }
  }
  const out = tempDir('quantlens-compare-');
  const { html } = await writeReport(runs.map((r) => r.dir), { out });
  const shot = path.join(os.tmpdir(), 'quantlens-comparison-screenshot.png');
  checkPage(await inspect(html, shot), runs);
  console.log(`screenshot: ${shot}`);
});

/** Brute force from a task's files: the task × precision table's numbers. */
function expectedTaskRow(f: Fixture, p: string): Record<string, number> {
  const dead = f.dead.filter((d) => d.precision === p);
  let high = 0, defined = 0;
  for (const c of f.correlation) {
    if (c.precision !== p || c.bin_lo === null) continue;
    defined += c.pairs;
    if (c.bin_lo >= 0.8 - 1e-12) high += c.pairs;
  }
  return {
    accuracy: f.summary.precisions[p].accuracy, mean_confidence: f.summary.precisions[p].mean_confidence, ace: f.summary.precisions[p].ace,
    dead: dead.reduce((a, d) => a + d.dead_count, 0), dead_total: dead.reduce((a, d) => a + d.total, 0),
    salient: f.salience.filter((s) => s.precision === p && s.salient_examples > 0).length,
    high_r_share: high / defined,
  };
}

test('cross-task report: four tasks side by side, task × precision table equal to each task\'s files', async () => {
  if (!existsSync(CHROMIUM)) { console.log(`SKIP browser suite report test: ${CHROMIUM} is absent`); return; }
  const tasks = ['boolq', 'piqa', 'hellaswag', 'toxicity'];
  const runs = tasks.map((t, i) => makeRun({ name: `paper-${t}`, datasetPath: `/d/${t}.csv`, seed: 400 + i }));
  const out = tempDir('quantlens-suite-');
  const res = await writeSuiteReport(runs.map((r) => r.dir), out);
  assert.equal(res.html, path.join(out, 'report.html'));
  const r = await inspect(res.html, path.join(os.tmpdir(), 'quantlens-suite-screenshot.png'));
  checkPage(r, runs);
  const html = readFileSync(res.html, 'utf8');
  assert.match(html, /high-\|r\| share: the fraction of MLP neuron pairs whose absolute Pearson correlation is at least 0\.8/);
  // Figures 1–3a: one panel per task, side by side in one row.
  assert.deepEqual([...html.split('<figure id="fig1-accuracy">')[1].split('</figure>')[0].matchAll(/class="panel-title"[^>]*>([^<]*)</g)].map((m) => m[1]), tasks);
  let cells = 0;
  runs.forEach((f, i) => {
    for (const p of ['fp32', 'int8', 'nf4']) {
      const want = expectedTaskRow(f, p);
      for (const k of ['accuracy', 'mean_confidence', 'ace', 'dead', 'salient', 'high_r_share']) {
        const m = r.marks.find((x) => x.attrs['data-metric'] === `task_${k}` && x.attrs['data-task'] === tasks[i] && x.attrs['data-precision'] === p)!;
        assert.ok(m, `${tasks[i]} ${p} ${k} missing`);
        assert.ok(Math.abs(Number(m.attrs['data-value']) - want[k]) <= 1e-12 * Math.max(1, Math.abs(want[k])), `${tasks[i]} ${p} ${k}: ${m.attrs['data-value']} vs ${want[k]}`);
        if (k === 'dead') assert.equal(m.shown, `${want.dead} / ${want.dead_total}`);
        else if (k === 'salient') assertShownCount(m.shown!.split(' ')[0], want.salient, k);
        else if (k === 'high_r_share') assertShownPercent(m.shown, want[k], `${tasks[i]} ${p} ${k}`);
        else assertShownFraction(m.shown, want[k], `${tasks[i]} ${p} ${k}`);
        cells++;
      }
    }
  });
  assert.equal(cells, 4 * 3 * 6);
  assert.equal(r.marks.filter((x) => x.attrs['data-metric']?.startsWith('task_')).length, cells);
  const csv = readFileSync(path.join(out, 'tables', 'suite-tasks.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.length, 1 + 4 * 3);
  await assert.rejects(writeSuiteReport([runs[0].dir], runs[0].dir), /must differ/);
});

test.run();
