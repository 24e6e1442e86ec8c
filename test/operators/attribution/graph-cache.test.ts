/**
 * Attribution graphs cached across runs (operators/attribution/graph-cache.ts), on the tiny demo
 * model (no ../shared needed): the second session loads from the cache and attributes
 * identically; a changed model (other weights at the same path), another layer or no cache dir
 * misses; an unreadable entry is rebuilt. The entry holds the suffix graph of the prefix split
 * (onnx/backward/prefix-split.ts) beside the full graph, and a hit opens both.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensureDemoModel } from '../../../sources/demo/demo-model.ts';
import { attributeExample, createAttributionSession } from '../../../operators/attribution/lig.ts';
import { attributionGraphKey } from '../../../operators/attribution/graph-cache.ts';
import { tempDir } from '../../helpers/temp.ts';

const TENSOR = (l: number) => `/model/layers.${l}/mlp/act_fn/Mul_output_0`;
const ids = Int32Array.from([1, 17, 42, 99, 5, 230, 64]);

async function attribute(model: string, cacheDir: string | undefined, layer = 1) {
  const s = await createAttributionSession(model, TENSOR(layer), { cacheDir, prefix: 'always' });
  const r = await attributeExample(s, { ids }, s.tensor, { steps: 8, onWarning: () => {} });
  await s.session.release();
  await s.prefix?.session.release();
  return { cache: s.graphCache, r, split: !!s.prefix };
}

test('second session loads from the cache with identical attributions; a changed model misses', async () => {
  const root = tempDir('ql-graph-cache-');
  const cacheDir = path.join(root, 'cache');
  const dir = await ensureDemoModel({ dir: path.join(root, 'model'), size: 'tiny', seed: 0 });
  const model = path.join(dir, 'model.onnx');
  const first = await attribute(model, cacheDir);
  assert.is(first.cache, 'miss');
  const entries = readdirSync(path.join(cacheDir, 'attribution'));
  assert.is(entries.length, 1);
  assert.ok(existsSync(path.join(cacheDir, 'attribution', entries[0], 'graph.onnx')) && existsSync(path.join(cacheDir, 'attribution', entries[0], 'info.json')));
  assert.equal(readdirSync(path.join(cacheDir, 'attribution', entries[0])).sort(), ['graph.onnx', 'info.json', 'suffix.onnx'], 'no temporaries left');
  assert.ok(first.split, 'prefix split built');

  const second = await attribute(model, cacheDir);
  assert.is(second.cache, 'hit');
  assert.ok(second.split, 'a hit opens the suffix graph too');
  assert.equal(Array.from(second.r.attributions), Array.from(first.r.attributions));
  assert.is(second.r.F_input, first.r.F_input);
  assert.is(second.r.target, first.r.target);
  // Built without a cache: the same numbers (the cached graph is the built graph).
  const fresh = await attribute(model, undefined);
  assert.is(fresh.cache, 'off');
  assert.equal(Array.from(fresh.r.attributions), Array.from(first.r.attributions));

  // The full-graph-only variant is another key.
  assert.is.not(await attributionGraphKey(model, { layerTensors: [TENSOR(1)], prefix: false }), await attributionGraphKey(model, { layerTensors: [TENSOR(1)] }));
  // Another layer is another entry.
  assert.is((await attribute(model, cacheDir, 2)).cache, 'miss');
  // Other weights written to the same path: the content hash changes, so the cache misses.
  const keyBefore = await attributionGraphKey(model, { layerTensors: [TENSOR(1)] });
  await ensureDemoModel({ dir, size: 'tiny', seed: 1 });
  assert.is.not(await attributionGraphKey(model, { layerTensors: [TENSOR(1)] }), keyBefore);
  const changed = await attribute(model, cacheDir);
  assert.is(changed.cache, 'miss');
  assert.ok(changed.r.attributions.some((v, j) => v !== first.r.attributions[j]), 'other weights, other attributions');
  assert.is(readdirSync(path.join(cacheDir, 'attribution')).length, 3);
});

test('an unreadable cache entry is rebuilt', async () => {
  const root = tempDir('ql-graph-cache-');
  const cacheDir = path.join(root, 'cache');
  const dir = await ensureDemoModel({ dir: path.join(root, 'model'), size: 'tiny', seed: 0 });
  const model = path.join(dir, 'model.onnx');
  const first = await attribute(model, cacheDir);
  const entry = path.join(cacheDir, 'attribution', readdirSync(path.join(cacheDir, 'attribution'))[0]);
  writeFileSync(path.join(entry, 'info.json'), '{ truncated');
  const again = await attribute(model, cacheDir);
  assert.is(again.cache, 'miss');
  assert.equal(Array.from(again.r.attributions), Array.from(first.r.attributions));
  assert.is((await attribute(model, cacheDir)).cache, 'hit');
  // An entry whose info names a split but whose suffix graph is gone is rebuilt too.
  rmSync(path.join(entry, 'suffix.onnx'));
  assert.is((await attribute(model, cacheDir)).cache, 'miss');
  assert.is((await attribute(model, cacheDir)).cache, 'hit');
});

test.run();
