/**
 * Binary correlation states (issue 11): saveState() writes raw little-endian float64 that merge()
 * streams back bit for bit; a deferred merge (quantlens merge: one key at a time) equals the eager
 * one; the older inline base64 JSON still loads to the same numbers; a truncated, foreign or
 * misnamed file is refused in one line naming it; retire() keeps results and, when asked, the
 * co-moments as a file that a later saveState() links beside its JSON.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CorrelationEstimator, type CoMomentFileEntry, type CorrelationResult } from '../../../operators/estimators/correlation.ts';
import { COMOMENT_MAGIC, entryBytes } from '../../../operators/estimators/correlation-state-file.ts';
import { GramRunner } from '../../../operators/estimators/correlation-graph.ts';
import { decodeF64 } from '../../../operators/estimators/state-codec.ts';
import type { ActivationChunk } from '../../../core/types.ts';
import { expectThrows } from '../../helpers/expect-error.ts';
import { tempDir } from '../../helpers/temp.ts';
import { chunk, gaussian, rng } from './synthetic.ts';

const D = 37;
const runner = new GramRunner();
const opts = { runner, compute: 'float64' as const, topK: 5 };

/** Two keys, three batches each; a constant neuron and a correlated pair. */
function chunks(seed: number): ActivationChunk[] {
  const r = rng(seed);
  const out: ActivationChunk[] = [];
  for (const [b, rows] of [9, 30, 4].entries())
    for (const layer of [1, 3]) {
      const v = new Float32Array(rows * D);
      for (let t = 0; t < rows; t++) {
        const f = gaussian(r);
        for (let c = 0; c < D; c++) v[t * D + c] = c === 5 ? 2 : c < 10 ? f + 0.3 * gaussian(r) : gaussian(r) + layer;
      }
      out.push(chunk('fp32', layer, 'act', v, D, b));
    }
  return out;
}

async function filled(seed: number): Promise<CorrelationEstimator> {
  const e = new CorrelationEstimator(opts);
  for (const c of chunks(seed)) await e.update(c);
  return e;
}

/** The estimator's inline state, as float64 arrays per key and field (the bits to compare). */
function arrays(e: CorrelationEstimator): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const s of e.state().entries) for (const f of ['mean', 'upper', 'min', 'max'] as const) out.set(`${s.layer}.${f}.${s.n}`, decodeF64(s[f]));
  return out;
}

function sameBits(a: Map<string, Float64Array>, b: Map<string, Float64Array>) {
  assert.equal([...b.keys()], [...a.keys()]);
  for (const [k, x] of a) assert.equal(Array.from(b.get(k)!), Array.from(x), k);
}

const sameResult = (a: CorrelationResult, b: CorrelationResult) => assert.equal(b, a);

test('saveState → merge round-trips every co-moment bit; deferred merge equals eager merge', async () => {
  const dir = tempDir('ql-corr-state-');
  const a = await filled(1), b = await filled(2);
  const sa = await a.saveState(dir, 'a.f64');
  const sb = await b.saveState(dir, 'b.f64');
  assert.ok(sa.entries.every((e) => (e as CoMomentFileEntry).file === 'a.f64'));
  // Header + two entries of raw float64, nothing else.
  assert.is(statSync(path.join(dir, 'a.f64')).size, COMOMENT_MAGIC.length + 2 * entryBytes(D));
  assert.is(readFileSync(path.join(dir, 'a.f64')).subarray(0, 8).toString('ascii'), COMOMENT_MAGIC);
  const back = new CorrelationEstimator(opts);
  back.merge(JSON.parse(JSON.stringify(sa)), dir);
  sameBits(arrays(a), arrays(back));

  const eager = new CorrelationEstimator(opts);
  eager.merge(sa, dir);
  eager.merge(sb, dir);
  const deferred = new CorrelationEstimator(opts);
  deferred.deferMerges();
  deferred.merge(sa, dir);
  deferred.merge(sb, dir);
  const legacy = new CorrelationEstimator(opts);
  legacy.merge(a.state());
  legacy.merge(b.state());
  sameResult(eager.finish(), deferred.finish());
  sameResult(eager.finish(), legacy.finish());
  // Inline (older) and binary states give the same accumulators, bit for bit.
  sameBits(arrays(legacy), arrays(eager));
});

test('retire() keeps results and spills co-moments; saveState lists them beside its JSON', async () => {
  const dir = tempDir('ql-corr-retire-');
  const single = await filled(3);
  const expected = single.finish();
  const e = new CorrelationEstimator(opts);
  const all = chunks(3);
  e.setActiveKeys([{ precision: 'fp32', layer: 1, tensor: 'act' }]);
  for (const c of all) await e.update(c);
  await e.retire(path.join(dir, 'state', 'pass1.f64'));
  e.setActiveKeys([{ precision: 'fp32', layer: 3, tensor: 'act' }]);
  for (const c of all) await e.update(c);
  sameResult(expected, e.finish());
  const s = await e.saveState(path.join(dir, 'shard'), 'rest.f64');
  assert.equal(s.entries.map((x) => (x as CoMomentFileEntry).file), ['pass1.f64', 'rest.f64']);
  assert.equal(s.finished!.map((f) => f.key.layer), [1]);
  // Merged as `quantlens merge` does (finished results ignored, every key from its file): the single pass's result.
  const m = new CorrelationEstimator(opts);
  m.deferMerges();
  m.merge(JSON.parse(JSON.stringify(s)), path.join(dir, 'shard'));
  sameResult(expected, m.finish());
  // Resumed from the same state: the retired key keeps its results, the other its co-moments.
  const resumed = new CorrelationEstimator(opts);
  resumed.merge(JSON.parse(JSON.stringify(s)), path.join(dir, 'shard'));
  sameResult(expected, resumed.finish());
  expectThrows(() => e.state(), { code: 'STATE', message: /^not supported: correlation state\(\) after a pass/ });
});

test('truncated, foreign and misnamed state files are refused in one line naming the file', async () => {
  const dir = tempDir('ql-corr-bad-');
  const s = await (await filled(4)).saveState(dir, 'c.f64');
  const file = path.join(dir, 'c.f64');
  const merge = () => new CorrelationEstimator(opts).merge(s, dir);
  truncateSync(file, statSync(file).size - 8);
  const t = expectThrows(merge, { code: 'STATE', message: /correlation fp32 layer 3 act: bytes \d+ … \d+ of width 37 lie outside the file's \d+ bytes; the state is truncated or corrupt/ });
  assert.is(t.where, file);
  writeFileSync(file, 'not a state file at all');
  expectThrows(merge, { code: 'STATE', message: /not a quantlens correlation state file/ });
  const moved = { entries: s.entries.map((e) => ({ ...e, file: '../c.f64' })) };
  expectThrows(() => new CorrelationEstimator(opts).merge(moved, dir), { code: 'STATE', message: /"\.\.\/c\.f64" is not a plain file name/ });
  expectThrows(() => new CorrelationEstimator(opts).merge({ entries: [{ ...s.entries[0], file: 'gone.f64' }] }, dir), { code: 'STATE', message: /cannot read the correlation state file gone\.f64 \(ENOENT\)/ });
  expectThrows(() => new CorrelationEstimator(opts).merge({ entries: [{ ...s.entries[0], width: -1 }] }, dir), { code: 'STATE', message: /correlation entry field width is -1/ });
});

test.run();
