import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { summariseProfile, type ProfileEvent } from '../../bench/pipeline-profile.ts';

/** One model_run of `dur` µs at `ts` holding `nodes` (name → kernel µs), laid out back to back. */
function run(ts: number, nodes: [string, number][]): ProfileEvent[] {
  const dur = nodes.reduce((s, [, d]) => s + d, 0) + 10;
  let t = ts + 1;
  const out: ProfileEvent[] = [{ cat: 'Session', name: 'model_run', ts, dur }];
  for (const [name, d] of nodes) {
    out.push({ cat: 'Node', name: `${name}_kernel_time`, ts: t, dur: d });
    t += d;
  }
  return out;
}

test('profile summary: per-batch minimum over repeats, parts by tensor name, and the share of the floor parts', () => {
  // Two batches, two repeats (repeat-major); the second repeat of batch 0 is slower everywhere.
  const batch = (model: number, x64: number, min: number, d2: number): [string, number][] => [
    ['/model/layers.0/mlp/MatMul', model],
    ['quantlens/bm_0/x64', x64],
    ['quantlens/bm_0/min/rows', min],
    ['quantlens/bm_0/d2', d2],
    ['quantlens/LastLogits', 5],
  ];
  const events = [
    ...run(0, batch(1000, 50, 20, 30)),
    ...run(10_000, batch(2000, 100, 40, 60)),
    ...run(20_000, batch(1500, 80, 30, 40)),
    ...run(30_000, batch(1000, 70, 30, 20)),
  ];
  const p = summariseProfile(events, 2, 2);
  // Model: min(1000, 1500) + min(2000, 1000) = 2000 µs; quantlens/LastLogits is not the model's.
  assert.is(p.modelMs, 2);
  const ms = Object.fromEntries(p.parts.map((x) => [x.part.split(' (')[0], x.ms]));
  assert.is(ms['float64 Σx'], (50 + 70) / 1000);
  assert.is(ms['min / max'], (20 + 30) / 1000);
  assert.is(ms['centred squares'], (30 + 20) / 1000);
  assert.ok(Math.abs(p.share - 0.22 / 2) < 1e-12);
  assert.ok(Math.abs(p.floorShare - 0.17 / 2) < 1e-12);
});

test.run();
