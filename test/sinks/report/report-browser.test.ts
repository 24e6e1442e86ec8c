/**
 * The report in a real browser (headless Chromium): renders offline with no console errors and no
 * network requests, every figure has a non-zero size, no two labels overlap, and the numbers the
 * page shows equal the fixture's Parquet/summary values. Saves PNG screenshots to os.tmpdir().
 * Skips with a SKIP line when /usr/bin/chromium is absent.
 */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeReport } from '../../../sinks/report/index.ts';
import { makeRun, type Fixture } from './fixture.ts';
import { assertShownCompact, assertShownFraction, type Mark } from './html-marks.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];
const FIGURES = ['fig1-accuracy', 'fig2-confidence', 'fig3-ace', 'fig3-reliability', 'fig4-correlation'];

interface PageReport {
  errors: string[];
  requests: string[];
  figureBoxes: Record<string, { width: number; height: number } | null>;
  panelSizes: number[][];
  marks: Mark[];
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
        return { tag: el.tagName.toLowerCase(), attrs, shown: label ? label.textContent!.trim() : null };
      });
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
      return { marks, panelSizes, overlaps, title: document.title };
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
  }
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
  const out = mkdtempSync(path.join(os.tmpdir(), 'quantlens-compare-'));
  const { html } = await writeReport(runs.map((r) => r.dir), { out });
  const shot = path.join(os.tmpdir(), 'quantlens-comparison-screenshot.png');
  checkPage(await inspect(html, shot), runs);
  console.log(`screenshot: ${shot}`);
});

test.run();
