import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { TimeAccount, formatTable, lcg, median, parseMaxRssKiB, roundRobin, syntheticRecords, wrapMethod, writeSyntheticJsonl } from '../../bench/lib.ts';
import { tempDir } from '../helpers/temp.ts';

/** k-th smallest (0-based) by counting, independent of sorting. */
function kthByCounting(xs: number[], k: number): number {
  for (const x of xs) {
    const less = xs.filter((y) => y < x).length;
    const equal = xs.filter((y) => y === x).length;
    if (less <= k && k < less + equal) return x;
  }
  throw new Error('unreachable');
}

test('median equals the middle order statistic (mean of the two middles for even counts)', () => {
  const rnd = lcg(3);
  for (let n = 1; n <= 12; n++) {
    const xs = Array.from({ length: n }, () => Math.floor(rnd() * 7) - 3);
    const want = n % 2 ? kthByCounting(xs, (n - 1) / 2) : (kthByCounting(xs, n / 2 - 1) + kthByCounting(xs, n / 2)) / 2;
    assert.is(median(xs), want, `n=${n} ${xs}`);
  }
  const xs = [5, 1, 4];
  median(xs);
  assert.equal(xs, [5, 1, 4], 'input left unsorted');
  assert.throws(() => median([]), /empty/);
});

test('roundRobin runs every task once per round, rotating who goes first', async () => {
  const calls: string[] = [];
  const mk = (name: string) => async (round: number) => {
    calls.push(`${name}${round}`);
    return `${name}@${round}`;
  };
  const rounds = await roundRobin(4, { a: mk('a'), b: mk('b'), c: mk('c') });
  assert.equal(calls, ['a0', 'b0', 'c0', 'b1', 'c1', 'a1', 'c2', 'a2', 'b2', 'a3', 'b3', 'c3']);
  assert.equal(rounds.map((r) => r.order.join('')), ['abc', 'bca', 'cab', 'abc']);
  rounds.forEach((r, i) => assert.equal(r.results, { a: `a@${i}`, b: `b@${i}`, c: `c@${i}` }));
  const two = await roundRobin(3, { x: async () => 1, y: async () => 2 });
  assert.equal(two.map((r) => r.order.join('')), ['xy', 'yx', 'xy']);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

test('wrapMethod times sync and async methods, keeps this and results, and restores', async () => {
  class Thing {
    k = 2;
    work(x: number): number {
      spin(20);
      return x * this.k;
    }
    async later(x: number): Promise<number> {
      await sleep(30);
      return x + this.k;
    }
    boom(): never {
      throw new Error('boom');
    }
  }
  const originals = { work: Thing.prototype.work, later: Thing.prototype.later, boom: Thing.prototype.boom };
  const acc = new TimeAccount();
  const restore = [wrapMethod(Thing.prototype, 'work', acc, 'sync'), wrapMethod(Thing.prototype, 'later', acc, 'async'), wrapMethod(Thing.prototype, 'boom', acc, 'boom')];
  const t = new Thing();
  const t0 = performance.now();
  assert.is(t.work(3), 6);
  assert.is(t.work(4), 8);
  const syncElapsed = performance.now() - t0;
  const t1 = performance.now();
  assert.is(await t.later(1), 3);
  const asyncElapsed = performance.now() - t1;
  assert.throws(() => t.boom(), /boom/);
  assert.is(acc.calls.get('sync'), 2);
  assert.is(acc.calls.get('async'), 1);
  assert.is(acc.calls.get('boom'), 1, 'a throwing call is still counted');
  // Each wrapped duration lies between the work done inside and the wall time seen outside.
  assert.ok(acc.get('sync') >= 40 && acc.get('sync') <= syncElapsed + 1, `sync ${acc.get('sync')} vs ${syncElapsed}`);
  assert.ok(acc.get('async') >= 25 && acc.get('async') <= asyncElapsed + 1, `async ${acc.get('async')} vs ${asyncElapsed}`);
  assert.is(acc.sum(), acc.get('sync') + acc.get('async') + acc.get('boom'));
  for (const r of restore) r();
  assert.is(Thing.prototype.work, originals.work);
  assert.is(Thing.prototype.later, originals.later);
  assert.is(Thing.prototype.boom, originals.boom);
  // An own property on an instance is restored; wrapping an inherited method leaves no own property behind.
  const inst = new Thing();
  const undo = wrapMethod(inst, 'work', acc, 'inst');
  assert.ok(Object.prototype.hasOwnProperty.call(inst, 'work'));
  undo();
  assert.not.ok(Object.prototype.hasOwnProperty.call(inst, 'work'));
  assert.throws(() => wrapMethod(inst, 'k', acc, 'x'), /not a function/);
});

test('formatTable aligns every column to its widest cell', () => {
  const out = formatTable(
    [{ title: 'name' }, { title: 'n', align: 'right' }, { title: 'note' }],
    [
      ['alpha', '1', 'x'],
      ['b', '12345', 'longer note'],
    ],
  );
  const lines = out.split('\n');
  assert.is(lines.length, 4);
  assert.is(lines[1], '-----  -----  -----------');
  // Column k starts where the rule's k-th dash run starts.
  const starts = [...lines[1].matchAll(/-+/g)].map((m) => m.index!);
  assert.equal(starts, [0, 7, 14]);
  assert.is(lines[2].slice(7, 12), '    1', 'right-aligned number');
  assert.is(lines[3].slice(0, 5), 'b    ');
  assert.is(lines[3].slice(14), 'longer note');
  assert.is(lines[2], lines[2].trimEnd(), 'no trailing spaces');
  assert.throws(() => formatTable([{ title: 'a' }], [['1', '2']]), /2 cells/);
});

test('parseMaxRssKiB reads GNU time -v output', () => {
  const sample = [
    '\tCommand being timed: "node pipelines/bin.mjs run x.yaml --quiet"',
    '\tUser time (seconds): 12.34',
    '\tMaximum resident set size (kbytes): 305412',
    '\tAverage resident set size (kbytes): 0',
    '\tExit status: 0',
  ].join('\n');
  assert.is(parseMaxRssKiB(sample), 305412);
  assert.is(parseMaxRssKiB('no such line'), null);
});

test('synthetic JSONL holds the generator records, deterministic per seed', async () => {
  const dir = tempDir('ql-bench-lib-');
  try {
    const opts = { minWords: 2, maxWords: 5, seed: 9 };
    const file = path.join(dir, 'a.jsonl');
    await writeSyntheticJsonl(file, 500, opts);
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.is(lines.pop(), '', 'ends with a newline');
    assert.is(lines.length, 500);
    const parsed = lines.map((l) => JSON.parse(l));
    assert.equal(parsed, [...syntheticRecords(500, opts)]);
    const counts = new Set(parsed.map((r) => r.prompt.split(' ').length));
    assert.equal([...counts].sort(), [2, 3, 4, 5], 'every length in [min, max] occurs, nothing outside');
    assert.equal(new Set(parsed.map((r) => r.gold)), new Set(['True', 'False']));
    assert.not.equal([...syntheticRecords(20, { ...opts, seed: 10 })], parsed.slice(0, 20));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
