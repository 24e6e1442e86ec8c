/** Number formatting and escaping used everywhere in the report. */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { dataValue, escapeText, formatCompact, formatCount, formatDelta, formatFraction, formatMetric, formatPercent, formatReal } from '../../../sinks/report/format.ts';

test('compact counts as in the paper: 1.2M, 45.3K, 999', () => {
  const cases: [number, string][] = [[0, '0'], [999, '999'], [1000, '1.0K'], [45_300, '45.3K'], [45_349, '45.3K'], [999_949, '999.9K'], [999_960, '1.0M'], [1_234_567, '1.2M'], [2.5e9, '2.5B'], [-1500, '-1.5K']];
  for (const [v, s] of cases) assert.equal(formatCompact(v), s, String(v));
});

test('compact labels stay within ±0.05 of their unit for many values (brute force)', () => {
  for (let v = 1000; v < 5e7; v = Math.floor(v * 1.37) + 1) {
    const s = formatCompact(v);
    const m = /^(\d+\.\d)([KMB])$/.exec(s)!;
    assert.ok(m, s);
    const unit = { K: 1e3, M: 1e6, B: 1e9 }[m[2] as 'K' | 'M' | 'B'];
    assert.ok(Math.abs(Number(m[1]) * unit - v) <= 0.05 * unit + 1e-9, `${v} → ${s}`);
    assert.ok(Number(m[1]) < 1000, `${v} → ${s}`);
  }
});

test('counts, fractions and reals', () => {
  assert.equal(formatCount(1234567), '1,234,567');
  assert.equal(formatCount(12), '12');
  assert.equal(formatFraction(0.62345), '0.623');
  assert.equal(formatReal(0.0123456), '0.01235');
  assert.equal(formatReal(26.9612), '26.96');
  assert.equal(formatReal(NaN), 'n/a');
  assert.equal(formatReal(Infinity), '∞');
  assert.equal(formatMetric('accuracy', 0.5), '0.500');
  assert.equal(formatMetric('flips_correct_to_wrong', 1234), '1,234');
  assert.equal(formatMetric('kl_mean', 0.000123456), '0.0001235');
});

test('percentages keep three significant digits, so a tiny share is not shown as 0', () => {
  const cases: [number, string][] = [[0, '0%'], [0.000123456, '0.0123%'], [0.5, '50.0%'], [0.01234, '1.23%'], [1, '100%'], [0.12345, '12.3%']];
  for (const [v, s] of cases) assert.equal(formatPercent(v), s, String(v));
  assert.equal(formatMetric('high_r_share', 0.000123456), '0.0123%');
});

test('deltas are signed in the metric\'s own format', () => {
  assert.equal(formatDelta('accuracy', 0.0125), '+0.013');
  assert.equal(formatDelta('accuracy', -0.05), '−0.050');
  assert.equal(formatDelta('accuracy', 0.0001), '0.000');
  assert.equal(formatDelta('dead_count', -3), '−3');
  assert.equal(formatDelta('dead_count', 1234), '+1,234');
  assert.equal(formatDelta('high_r_share', -0.0000972), '−0.00972 pp');
});

test('data values round-trip exactly', () => {
  for (const v of [0.1 + 0.2, 1 / 3, 1e-300, 123456789.123]) assert.equal(Number(dataValue(v)), v);
});

test('escaping covers the five HTML/XML specials', () => {
  assert.equal(escapeText(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
});

test.run();
