import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gaussLegendre } from '../../../operators/attribution/gauss-legendre.ts';

test('n nodes integrate x^d exactly on [0,1] for d <= 2n-1, and not d = 2n', () => {
  for (const n of [1, 2, 3, 5, 8, 16, 50]) {
    const { nodes, weights } = gaussLegendre(n);
    assert.is(nodes.length, n);
    for (let i = 1; i < n; i++) assert.ok(nodes[i] > nodes[i - 1] && nodes[i] > 0 && nodes[i] < 1);
    for (let d = 0; d <= Math.min(2 * n - 1, 40); d++) {
      let q = 0;
      for (let i = 0; i < n; i++) q += weights[i] * nodes[i] ** d;
      assert.ok(Math.abs(q - 1 / (d + 1)) < 1e-12, `n=${n} d=${d}: ${q}`);
    }
    // The error at degree 2n is (n!)^4/((2n+1)((2n)!)^3)·(2n)! on [0,1]: 1.4e-6 at n = 5, too small to see beyond.
    if (n <= 5) {
      let q = 0;
      for (let i = 0; i < n; i++) q += weights[i] * nodes[i] ** (2 * n);
      assert.ok(Math.abs(q - 1 / (2 * n + 1)) > 1e-9, `n=${n} is not exact at degree 2n`);
    }
  }
});

test('known 2-point rule and a smooth integral at 1024 nodes', () => {
  const { nodes, weights } = gaussLegendre(2);
  assert.ok(Math.abs(nodes[0] - (0.5 - 0.5 / Math.sqrt(3))) < 1e-15);
  assert.ok(Math.abs(weights[0] - 0.5) < 1e-15);
  const q = gaussLegendre(1024);
  let s = 0;
  for (let i = 0; i < 1024; i++) s += q.weights[i] * Math.exp(q.nodes[i]);
  assert.ok(Math.abs(s - (Math.E - 1)) < 1e-12);
  assert.throws(() => gaussLegendre(0));
});

test.run();
