import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CorrelationEstimator, type CorrelationOptions } from '../../../operators/estimators/correlation.ts';
import { GramRunner } from '../../../operators/estimators/correlation-graph.ts';
import { chunk, gaussian, rng } from './synthetic.ts';

const runner = new GramRunner();

/**
 * Keys of different widths and structure: latent factors (components for the linkage), a constant
 * column, an exact copy (|r| = 1), and pure noise; one key wide enough that 'auto' would use the worker.
 */
async function fed(opts: CorrelationOptions, seed: number): Promise<CorrelationEstimator> {
  const e = new CorrelationEstimator({ runner, ...opts });
  const r = rng(seed);
  for (const [layer, d, n] of [[0, 120, 90], [1, 257, 60], [2, 64, 200], [3, 31, 40]]) {
    for (let b = 0; b < 2; b++) {
      const x = new Float32Array(n * d);
      for (let t = 0; t < n; t++) {
        const f = [gaussian(r), gaussian(r), gaussian(r)];
        for (let c = 0; c < d; c++) x[t * d + c] = c === 5 ? 2.5 : c % 4 === 0 ? f[c % 3] + 0.5 * gaussian(r) : gaussian(r);
        x[t * d + 7] = x[t * d + 3];
      }
      await e.update(chunk('fp32', layer, 'act', x, d, b));
    }
  }
  return e;
}

const settings: [string, CorrelationOptions][] = [
  ['defaults', {}],
  ['top 0, threshold 0.8', { topK: 0, clusterThreshold: 0.8 }],
  ['no clustering, top 50', { cluster: false, topK: 50 }],
];

for (const [name, opts] of settings) {
  test(`finish on two threads is bit-identical to one thread (${name})`, async () => {
    const one = await fed({ ...opts, finishThreads: 'never' }, 11);
    const two = await fed({ ...opts, finishThreads: 'always', finishAwaitWorkerMs: 5000 }, 11);
    const a = one.finish(), b = two.finish();
    assert.is(one.finishWorkerKeys, 0);
    assert.ok(two.finishWorkerKeys >= 1, `the worker finished ${two.finishWorkerKeys} keys`);
    assert.equal(b, a);
    // The same values to the last bit, top-pair r included (equal() compares numbers with ===).
    const bits = (x: typeof a) => Buffer.from(Float64Array.from(x.summaries.flatMap((s) => s.top_pairs.map((p) => p.r))).buffer).toString('hex');
    assert.is(bits(b), bits(a));
    // retire() (multi-pass runs) takes the same path.
    const three = await fed({ ...opts, finishThreads: 'always', finishAwaitWorkerMs: 5000 }, 11);
    await three.retire();
    assert.ok(three.finishWorkerKeys >= 1);
    assert.equal(three.finish(), a);
  });
}

test.after(async () => {
  await runner.release();
});

test.run();
