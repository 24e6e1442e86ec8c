/** SVG primitives: axis ticks, colour assignment, label fitting, escaping of attributes. */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { attrs, coloursFor, fitText, niceTicks, OKABE_ITO } from '../../../sinks/report/svg.ts';

test('nice ticks start at 0, are evenly spaced and cover the maximum', () => {
  for (const max of [0.07, 0.2, 0.93, 1, 3.3, 17, 250, 12345]) {
    const t = niceTicks(max);
    assert.equal(t[0], 0);
    assert.ok(t[t.length - 1] >= max - 1e-12, `${max}: ${t}`);
    assert.ok(t.length >= 3 && t.length <= 12, `${max}: ${t}`);
    const step = t[1] - t[0];
    for (let i = 1; i < t.length; i++) assert.ok(Math.abs(t[i] - t[i - 1] - step) < step * 1e-9, `${max}: ${t}`);
    // The step is 1, 2, 2.5 or 5 times a power of ten.
    const mant = step / 10 ** Math.floor(Math.log10(step));
    assert.ok([1, 2, 2.5, 5].some((m) => Math.abs(m - mant) < 1e-9), `${max}: step ${step}`);
  }
});

test('precisions get distinct Okabe–Ito colours in order', () => {
  const c = coloursFor(['fp32', 'int8', 'nf4', 'q4', 'llm-int8']);
  assert.equal(new Set(c.values()).size, 5);
  assert.equal(c.get('fp32'), OKABE_ITO[0]);
  for (const v of c.values()) assert.ok(OKABE_ITO.includes(v));
});

test('labels are cut with an ellipsis to fit', () => {
  assert.equal(fitText('short', 200, 10), 'short');
  const cut = fitText('a-very-long-model-name-indeed', 60, 10);
  assert.ok(cut.endsWith('…') && cut.length * 6 <= 60, cut);
});

test('attribute values are escaped and undefined ones dropped', () => {
  assert.equal(attrs({ 'data-run': '"><x', 'data-no': undefined, 'data-n': 3 }), ' data-run="&quot;&gt;&lt;x" data-n="3"');
});

test.run();
