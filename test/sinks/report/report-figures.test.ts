/**
 * The report's newer parts against brute-force recomputations from the fixture's files: dead and
 * salient figures per layer × precision with unconverged flags, the completeness distribution,
 * per-layer |r| small multiples, the zero-safe log axis, Δ vs the reference, flipped examples,
 * CSV files, headings and units, panel widths, and byte-identical reports for identical runs.
 */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeReport } from '../../../sinks/report/index.ts';
import { makeRun, type Fixture } from './fixture.ts';
import { assertShownCompact, assertShownCount, figureHtml, marks, parseAttrs, tableHtml } from './html-marks.ts';
import { tempDir } from '../../helpers/temp.ts';

const P = ['fp32', 'int8', 'nf4'];

/** Parse a CSV written by the report (no quoted newlines in these tables). */
function readCsv(file: string): Record<string, string>[] {
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  const split = (l: string) => [...l.matchAll(/("([^"]|"")*"|[^,]*)(,|$)/g)].map((m) => m[1].replace(/^"|"$/g, '').replace(/""/g, '"')).slice(0, -1);
  const head = split(lines[0]);
  return lines.slice(1).map((l) => Object.fromEntries(split(l).map((v, i) => [head[i], v])));
}

function flagOf(f: Fixture, p: string, layer: number): number {
  return (f.summary.salience[p][String(layer)].completeness.unconverged_example_ids as number[]).length;
}

test('figure 5: dead neurons per layer × precision equal dead.parquet', async () => {
  const f = makeRun({ seed: 51 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const ms = marks(figureHtml(html, 'fig5-dead')!);
  assert.equal(ms.length, f.dead.length);
  for (const d of f.dead) {
    const m = ms.find((x) => x.attrs['data-precision'] === d.precision && Number(x.attrs['data-layer']) === d.layer)!;
    assert.equal(Number(m.attrs['data-value']), d.dead_count);
    assert.equal(Number(m.attrs['data-total']), d.total);
    assertShownCount(m.shown, d.dead_count, 'dead bar');
  }
});

test('figure 6 and the salient table: union per layer from salience.parquet, ⚠k/n where examples did not converge', async () => {
  const f = makeRun({ seed: 52 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const ms = marks(figureHtml(html, 'fig6-salient')!);
  assert.equal(ms.length, P.length * 2);
  let flagged = 0;
  for (const m of ms) {
    const p = m.attrs['data-precision'], layer = Number(m.attrs['data-layer']);
    const expected = f.salience.filter((s) => s.precision === p && s.layer === layer && s.salient_examples > 0).length;
    assert.equal(Number(m.attrs['data-value']), expected);
    const k = f.summary.salience[p][String(layer)].completeness.unconverged_example_ids.length;
    assert.equal(Number(m.attrs['data-unconverged']), k);
    assert.equal(m.shown, k ? `${expected} ⚠${k}/8` : String(expected));
    if (k) flagged++;
  }
  assert.ok(flagged > 0, 'fixture has unconverged examples');
  // Salient-set Jaccard rests on the same attributions: flagged under the agreement table.
  const note = /<p class="note">([^<]*)<\/p>/.exec(tableHtml(html, 'agreement-layers')!)![1];
  for (const p of P) for (const layer of [0, 3]) {
    const k = flagOf(f, p, layer);
    assert.equal(note.includes(`layer ${layer} ${p} (${k}/8)`), k > 0, `${p} ${layer} in "${note}"`);
  }
  // The table puts the same flag beside the count.
  const t = tableHtml(html, 'salient')!;
  for (const row of t.split('<tr>').slice(2)) {
    const layer = Number(/<th scope="row">(\d+)<\/th>/.exec(row)![1]);
    const flags = [...row.matchAll(/<td class="flag">([^<]*)<\/td>/g)].map((x) => x[1]);
    assert.deepEqual(flags, P.map((p) => { const k = flagOf(f, p, layer); return k ? `⚠${k}/8` : ''; }));
  }
});

test('figure 7: completeness min/median/p90/max and unconverged counts from the per-example errors', async () => {
  const f = makeRun({ seed: 53 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const ms = marks(figureHtml(html, 'fig7-completeness')!);
  assert.equal(ms.length, P.length * 2);
  for (const m of ms) {
    const c = f.summary.salience[m.attrs['data-precision']][m.attrs['data-layer']].completeness;
    for (const k of ['min', 'median', 'p90', 'max'] as const) assert.equal(Number(m.attrs[`data-${k}`]), c[k], k);
    assert.equal(Number(m.attrs['data-unconverged']), c.unconverged_example_ids.length);
    assert.equal(m.shown, `${c.unconverged_example_ids.length ? '⚠' : ''}${c.unconverged_example_ids.length}/${c.count}`);
  }
  assert.ok(figureHtml(html, 'fig7-completeness')!.includes('class="threshold"'));
});

test('figure 4b: one panel per layer, each bar the pairs of that layer and bin', async () => {
  const f = makeRun({ seed: 54 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const fig = figureHtml(html, 'fig4b-correlation-layers')!;
  assert.deepEqual([...fig.matchAll(/class="panel-title"[^>]*>([^<]*)</g)].map((m) => m[1]), ['layer 0', 'layer 3']);
  const ms = marks(fig);
  const expected = f.correlation.filter((c) => c.bin_lo !== null && c.bin_lo >= 0.3 - 1e-12);
  assert.equal(ms.length, expected.length);
  for (const c of expected) {
    const m = ms.find((x) => Number(x.attrs['data-layer']) === c.layer && x.attrs['data-precision'] === c.precision && Number(x.attrs['data-bin-lo']) === c.bin_lo)!;
    assert.equal(Number(m.attrs['data-value']), c.pairs);
    assertShownCompact(m.shown, c.pairs, 'layer pairs');
  }
});

test('zero-safe log axis: 0 draws no bar, 1 a visible one, and heights grow with log(1 + n)', async () => {
  const f = makeRun({ seed: 55 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const fig = figureHtml(html, 'fig4-correlation')!;
  const heights = new Map<number, number>();
  for (const m of fig.matchAll(/<g class="mark"([^>]*)>(.*?)<\/g>/g)) {
    const a = parseAttrs(m[1]);
    const h = /<rect [^>]*height="([\d.]+)"/.exec(m[2]);
    heights.set(Number(a['data-value']), h ? Number(h[1]) : 0);
  }
  assert.equal(heights.get(0), 0, 'zero pairs: no bar');
  assert.ok(heights.get(1)! >= 5, `one pair: visible bar, got ${heights.get(1)}`);
  const sorted = [...heights].sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i][1] >= sorted[i - 1][1] - 0.1, `monotone at ${sorted[i][0]}`);
  // Ratio of heights follows log10(1 + n) (rounded to 0.1 px).
  const [n1, h1] = sorted.at(-1)!;
  assert.ok(Math.abs(heights.get(1)! / h1 - Math.log10(2) / Math.log10(1 + n1)) < 0.01);
});

test('Δ vs the reference in the precision, dead and salient tables', async () => {
  const f = makeRun({ seed: 56 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const deltas = (id: string) => [...tableHtml(html, id)!.matchAll(/<td class="num delta"([^>]*)>([^<]*)</g)].map((m) => ({ a: parseAttrs(m[1]), shown: m[2].replace('−', '-') }));
  for (const d of deltas('precisions')) {
    const k = d.a['data-delta'] as 'accuracy' | 'mean_confidence' | 'ace';
    const want = f.summary.precisions[d.a['data-precision']][k] - f.summary.precisions.fp32[k];
    assert.ok(Math.abs(Number(d.a['data-value']) - want) < 1e-12);
    assert.ok(Math.abs(Number(d.shown) - want) <= 0.0005 + 1e-12, `${k}: ${d.shown} vs ${want}`);
  }
  assert.equal(deltas('precisions').length, 2 * 3);
  const dd = deltas('dead');
  assert.equal(dd.length, 2 * 2);
  for (const d of dd) {
    const row = (p: string) => f.dead.find((x) => x.precision === p && x.layer === Number(d.a['data-layer']))!;
    assert.equal(Number(d.a['data-value']), row(d.a['data-precision']).dead_count - row('fp32').dead_count);
    assert.equal(Number(d.shown), Number(d.a['data-value']));
  }
  assert.equal(deltas('salient').length, 2 * 2);
});

test('flipped examples: exactly the ids whose correctness differs from the reference', async () => {
  const f = makeRun({ seed: 57 });
  const res = await writeReport([f.dir]);
  const html = readFileSync(res.html, 'utf8');
  const rows = [...tableHtml(html, 'flips')!.matchAll(/<tr class="flip"([^>]*)>/g)].map((m) => parseAttrs(m[1]));
  const expected: string[] = [];
  for (const p of ['int8', 'nf4']) for (const q of f.predictions.filter((r) => r.precision === p)) {
    const ref = f.predictions.find((r) => r.precision === 'fp32' && r.example_id === q.example_id)!;
    if (ref.correct !== q.correct) expected.push(`${p}|${q.example_id}|${ref.correct ? 'correct_to_wrong' : 'wrong_to_correct'}`);
  }
  assert.ok(expected.length > 0);
  assert.deepEqual(rows.map((r) => `${r['data-precision']}|${r['data-example']}|${r['data-flip']}`), expected);
  const csv = readCsv(path.join(f.dir, 'tables', 'flips.csv'));
  assert.deepEqual(csv.map((r) => `${r.precision}|${r.example_id}|${r.direction}`), expected);
});

test('a CSV per table, linked from its heading, with the files\' exact values', async () => {
  const f = makeRun({ seed: 58 });
  const res = await writeReport([f.dir]);
  const html = readFileSync(res.html, 'utf8');
  const ids = [...html.matchAll(/<div class="table" data-table="([^"]+)">/g)].map((m) => m[1]);
  assert.ok(ids.length >= 8);
  for (const id of ids) assert.ok(tableHtml(html, id) !== null && html.includes(`href="tables/${id}.csv"`), `${id}: CSV link`);
  assert.deepEqual(res.tables.map((t) => path.basename(t)).sort(), ids.map((id) => `${id}.csv`).sort());
  assert.deepEqual(readdirSync(path.join(f.dir, 'tables')).sort(), ids.map((id) => `${id}.csv`).sort(), 'no temporaries left beside the CSVs');
  const dead = readCsv(path.join(f.dir, 'tables', 'dead.csv'));
  assert.equal(dead.length, f.dead.length);
  for (const d of f.dead) {
    const r = dead.find((x) => x.precision === d.precision && Number(x.layer) === d.layer)!;
    assert.equal(Number(r.dead_count), d.dead_count);
    assert.equal(Number(r.total), d.total);
  }
  const agreement = readCsv(path.join(f.dir, 'tables', 'agreement-output.csv'));
  for (const a of f.agreement.filter((x) => x.layer === null)) {
    assert.equal(Number(agreement.find((r) => r.precision === a.precision && r.metric === a.metric)!.value), a.value);
  }
  const prec = readCsv(path.join(f.dir, 'tables', 'precisions.csv'));
  for (const p of P) assert.equal(Number(prec.find((r) => r.precision === p)!.accuracy), f.summary.precisions[p].accuracy);
});

test('KL in nats, no raw metric names, panels sized to the page', async () => {
  const f = makeRun({ seed: 59 });
  const html = readFileSync((await writeReport([f.dir])).html, 'utf8');
  const heads = [...tableHtml(html, 'agreement-output')!.matchAll(/<th>([^<]*)<\/th>/g)].map((m) => m[1]);
  for (const h of heads.filter((x) => x.startsWith('KL'))) assert.match(h, /\(nats\)$/);
  assert.ok(heads.filter((x) => x.startsWith('KL')).length === 5);
  const allHeads = [...html.matchAll(/<th[^>]*>([^<]*)<\/th>/g)].map((m) => m[1]);
  assert.ok(!allHeads.some((h) => /^[a-z0-9]+(_[a-z0-9]+)+$/.test(h)), `raw names: ${allHeads.filter((h) => /_/.test(h))}`);
  for (const id of ['fig1-accuracy', 'fig4-correlation', 'fig5-dead', 'fig3-reliability']) {
    const widths = [...figureHtml(html, id)!.matchAll(/<g class="panel" transform="translate\(([\d.]+) /g)];
    const svgW = Number(/<svg [^>]*width="(\d+)"/.exec(figureHtml(html, id)!)![1]);
    assert.ok(svgW >= 540, `${id}: figure ${svgW}px wide`);
    assert.ok(widths.length > 0);
  }
});

test('identical runs give byte-identical reports (wall time and throughput are not shown)', async () => {
  const f = makeRun({ seed: 60 });
  const twin = tempDir('quantlens-twin-');
  cpSync(f.dir, twin, { recursive: true });
  const s = JSON.parse(readFileSync(path.join(twin, 'summary.json'), 'utf8'));
  Object.assign(s, { wall_seconds: 99.5, tokens_per_second: 7.25 });
  writeFileSync(path.join(twin, 'summary.json'), JSON.stringify(s));
  const a = await writeReport([f.dir]);
  const b = await writeReport([twin]);
  assert.equal(readFileSync(a.html, 'utf8'), readFileSync(b.html, 'utf8'));
  for (const [i, t] of a.tables.entries()) assert.equal(readFileSync(t, 'utf8'), readFileSync(b.tables[i], 'utf8'));
  for (const [i, g] of a.figures.entries()) assert.equal(readFileSync(g, 'utf8'), readFileSync(b.figures[i], 'utf8'));
});

test('comparison: across-runs table with Δ vs the first run', async () => {
  const runs = [makeRun({ seed: 61, name: 'a' }), makeRun({ seed: 62, name: 'b' })];
  const out = tempDir('quantlens-compare-');
  const html = readFileSync((await writeReport(runs.map((r) => r.dir), { out })).html, 'utf8');
  const ms = marks(tableHtml(html, 'across-runs')!);
  for (const p of P) {
    const acc = ms.filter((m) => m.attrs['data-metric'] === 'run_accuracy' && m.attrs['data-precision'] === p);
    assert.equal(acc.length, 2);
    assert.equal(Number(acc[1].attrs['data-delta']), runs[1].summary.precisions[p].accuracy - runs[0].summary.precisions[p].accuracy);
    const dead = ms.find((m) => m.attrs['data-metric'] === 'run_dead' && m.attrs['data-precision'] === p && m.attrs['data-run'] === 'b')!;
    const sum = (f: Fixture) => f.dead.filter((d) => d.precision === p).reduce((x, d) => x + d.dead_count, 0);
    assert.equal(Number(dead.attrs['data-value']), sum(runs[1]));
    assert.equal(Number(dead.attrs['data-delta']), sum(runs[1]) - sum(runs[0]));
  }
});

test.run();
