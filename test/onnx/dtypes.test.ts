import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { floatToHalf, halfToFloat } from '../../onnx/dtypes.ts';

test('half → float → half is the identity on every finite half', () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const f = halfToFloat(all);
  const back = floatToHalf(f);
  for (let i = 0; i < 65536; i++) {
    const exp = (i >> 10) & 0x1f;
    if (exp === 31 && (i & 0x3ff)) { assert.ok(Number.isNaN(f[i])); continue; }
    assert.is(back[i], i, `half 0x${i.toString(16)}`);
  }
});

test('float → half rounds to the nearest half (ties to even), checked by brute force', () => {
  const halves = halfToFloat(Uint16Array.from({ length: 0x7c00 }, (_, i) => i)); // all positive finite
  const xs = Float32Array.from({ length: 2000 }, (_, i) => Math.abs(Math.sin(i * 12.9898) * 70000 * Math.exp(-i / 300)));
  const h = floatToHalf(xs);
  for (let k = 0; k < xs.length; k++) {
    const x = xs[k];
    if (x > 65504) continue;
    let best = 0, bestErr = Infinity;
    for (let i = 0; i < halves.length; i++) {
      const err = Math.abs(halves[i] - x);
      if (err < bestErr || (err === bestErr && (i & 1) === 0)) { best = i; bestErr = err; }
    }
    assert.is(h[k], best, `x=${x}`);
  }
});

test.run();
