import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { batchByTokens } from '../../operators/batch.ts';
import type { TokenizedExample } from '../../core/types.ts';
import { mulberry32 } from '../../core/random.ts';

function examples(n: number, seed: number): TokenizedExample[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => ({ example_id: i, ids: new Int32Array(1 + Math.floor(r() * 90)).fill(7), gold: '', truncated: false, fields: {} }));
}

async function* stream(xs: TokenizedExample[]) {
  yield* xs;
}

test('every example exactly once, each batch within the token budget, indices consecutive', async () => {
  const xs = examples(1000, 3);
  const opts = { maxTokens: 512, maxExamples: 16, window: 100 };
  const seen = new Map<number, number>();
  let index = 0;
  for await (const b of batchByTokens(stream(xs), opts)) {
    assert.is(b.index, index++);
    const lengths = b.examples.map((e) => e.ids.length);
    assert.is(b.seqLen, Math.max(...lengths));
    assert.equal(Array.from(b.lengths), lengths);
    assert.is(b.realTokens, lengths.reduce((a, c) => a + c, 0));
    assert.is(b.paddedTokens, b.examples.length * b.seqLen - b.realTokens);
    assert.ok(b.examples.length <= opts.maxExamples);
    assert.ok(b.examples.length === 1 || b.examples.length * b.seqLen <= opts.maxTokens, `batch ${b.index} over budget`);
    for (const e of b.examples) seen.set(e.example_id, (seen.get(e.example_id) ?? 0) + 1);
  }
  assert.is(seen.size, 1000);
  assert.ok([...seen.values()].every((c) => c === 1));
});

test('bucketing within the window pads less than batching in file order', async () => {
  const xs = examples(1000, 5);
  const pad = async (window: number) => {
    let padded = 0;
    for await (const b of batchByTokens(stream(xs), { maxTokens: 1024, maxExamples: 16, window })) padded += b.paddedTokens;
    return padded;
  };
  const bucketed = await pad(200);
  // The same budget filled greedily in file order, without sorting.
  let inOrder = 0;
  let group: number[] = [];
  const flush = () => {
    const m = Math.max(...group);
    inOrder += group.reduce((a, l) => a + (m - l), 0);
    group = [];
  };
  for (const x of xs) {
    const l = x.ids.length;
    if (group.length && (group.length >= 16 || (group.length + 1) * Math.max(l, ...group) > 1024)) flush();
    group.push(l);
  }
  flush();
  assert.ok(bucketed < inOrder / 2, `bucketed ${bucketed} vs in order ${inOrder}`);
});

test('an example longer than the budget runs alone', async () => {
  const xs = examples(5, 1);
  xs[2] = { ...xs[2], ids: new Int32Array(600) };
  const batches = [];
  for await (const b of batchByTokens(stream(xs), { maxTokens: 100, maxExamples: 8, window: 5 })) batches.push(b);
  const long = batches.find((b) => b.examples.some((e) => e.example_id === 2))!;
  assert.is(long.examples.length, 1);
});

test.run();
