import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SeededRandom, mulberry32 } from '../../core/random.ts';

test('mulberry32: deterministic per seed, uniform in [0, 1)', () => {
  const a = mulberry32(42), b = mulberry32(42), c = mulberry32(43);
  const xs = Array.from({ length: 10000 }, () => a());
  assert.equal(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
  assert.not.equal(xs[0], c());
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const buckets = new Array(10).fill(0);
  for (const x of xs) buckets[Math.floor(x * 10)]++;
  for (const n of buckets) assert.ok(Math.abs(n - 1000) < 150, `bucket ${n}`); // ~5σ
});

test('normal(): mean ≈ 0, variance ≈ 1, tails like N(0,1)', () => {
  const r = new SeededRandom(7);
  const n = 40000;
  const xs = Array.from({ length: n }, () => r.normal());
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
  assert.ok(Math.abs(mean) < 0.025, `mean ${mean}`);
  assert.ok(Math.abs(v - 1) < 0.04, `var ${v}`);
  const beyond2 = xs.filter((x) => Math.abs(x) > 2).length / n; // 4.55% for N(0,1)
  assert.ok(Math.abs(beyond2 - 0.0455) < 0.006, `P(|x|>2) ${beyond2}`);
  const arr = new SeededRandom(7).normalArray(4, 2, 1);
  const again = new SeededRandom(7);
  assert.equal(Array.from(arr), Array.from({ length: 4 }, () => Math.fround(1 + 2 * again.normal())));
});

test.run();
