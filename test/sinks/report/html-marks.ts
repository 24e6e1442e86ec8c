/**
 * Test helpers: pull the numbers the report shows out of its HTML (or, in the browser test, out
 * of the DOM) and check a shown string against a value from the files without reusing the
 * report's own formatting code.
 */
import assert from 'node:assert/strict';

export interface Mark { tag: string; attrs: Record<string, string>; shown: string | null }

function unescape(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
}

export function parseAttrs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/([\w-]+)="([^"]*)"/g)) out[m[1]] = unescape(m[2]);
  return out;
}

/** Every element carrying data-metric in `html`, with the number it shows (value label or cell text). */
export function marks(html: string): Mark[] {
  const out: Mark[] = [];
  for (const m of html.matchAll(/<(g|td|span)\b([^>]*\bdata-metric="[^"]*"[^>]*)>/g)) {
    const tag = m[1];
    const rest = html.slice(m.index! + m[0].length);
    const inner = rest.slice(0, rest.indexOf(`</${tag}>`));
    let shown: string | null;
    if (tag === 'g') {
      const label = /<text[^>]*class="value-label"[^>]*>([^<]*)<\/text>/.exec(inner);
      shown = label ? unescape(label[1]) : null;
    } else {
      shown = unescape(inner.replace(/<[^>]*>/g, '')).trim();
    }
    out.push({ tag, attrs: parseAttrs(m[2]), shown });
  }
  return out;
}

/** The HTML inside <figure id="id">…</figure>, or null. */
export function figureHtml(html: string, id: string): string | null {
  const start = html.indexOf(`<figure id="${id}">`);
  if (start < 0) return null;
  return html.slice(start, html.indexOf('</figure>', start));
}

/** The HTML of the table block data-table="id" (optionally inside one run's tables), or null. */
export function tableHtml(html: string, id: string, run?: string): string | null {
  let from = 0;
  if (run !== undefined) {
    from = html.indexOf(`<div class="run-tables" data-run="${run}">`);
    if (from < 0) return null;
  }
  const start = html.indexOf(`data-table="${id}"`, from);
  if (start < 0) return null;
  const nextRun = html.indexOf('<div class="run-tables"', from + 1);
  if (run !== undefined && nextRun > 0 && start > nextRun) return null;
  return html.slice(start, html.indexOf('</table>', start));
}

/** A shown fraction has three decimals and is the value rounded. */
export function assertShownFraction(shown: string | null, value: number, what: string): void {
  assert.ok(shown !== null, `${what}: nothing shown`);
  assert.match(shown!, /^-?\d+\.\d{3}$/, `${what}: "${shown}" is not a 3-decimal number`);
  assert.ok(Math.abs(Number(shown) - value) <= 0.0005 + 1e-12, `${what}: shows ${shown}, file has ${value}`);
}

/** A shown count equals the value exactly (thousands separators allowed). */
export function assertShownCount(shown: string | null, value: number, what: string): void {
  assert.ok(shown !== null, `${what}: nothing shown`);
  assert.equal(Number(shown!.replace(/,/g, '')), value, `${what}: shows ${shown}, file has ${value}`);
}

/** A shown real is the value to four significant digits. */
export function assertShownReal(shown: string | null, value: number, what: string): void {
  assert.ok(shown !== null, `${what}: nothing shown`);
  const v = Number(shown);
  assert.ok(Number.isFinite(v), `${what}: "${shown}" is not a number`);
  assert.ok(Math.abs(v - value) <= Math.abs(value) * 5e-4 + 1e-15, `${what}: shows ${shown}, file has ${value}`);
}

/** A compact count ("60.2K", "1.2M", "747") stands for the value within its rounding. */
export function assertShownCompact(shown: string | null, value: number, what: string): void {
  assert.ok(shown !== null, `${what}: nothing shown`);
  const m = /^(\d+(?:\.\d)?)([KMB]?)$/.exec(shown!);
  assert.ok(m, `${what}: "${shown}" is not a compact count`);
  const unit = { '': 1, K: 1e3, M: 1e6, B: 1e9 }[m![2] as '' | 'K' | 'M' | 'B'];
  if (unit === 1) assert.equal(Number(m![1]), value, `${what}: shows ${shown}, file has ${value}`);
  else {
    assert.ok(value >= 1000, `${what}: ${value} < 1000 should be shown in full`);
    assert.ok(Math.abs(Number(m![1]) * unit - value) <= 0.05 * unit + 1e-9, `${what}: shows ${shown}, file has ${value}`);
    assert.ok(Number(m![1]) < 1000, `${what}: ${shown} should use the next unit`);
  }
}

/** A shown percentage ("0.0123%", "12.3%") is the value × 100 to three significant digits. */
export function assertShownPercent(shown: string | null, value: number, what: string): void {
  assert.ok(shown !== null, `${what}: nothing shown`);
  const m = /^(\d+(?:\.\d+)?)%$/.exec(shown!);
  assert.ok(m, `${what}: "${shown}" is not a percentage`);
  assert.ok(Math.abs(Number(m![1]) / 100 - value) <= Math.abs(value) * 5e-3 + 1e-15, `${what}: shows ${shown}, file has ${value}`);
}
