/**
 * The reverse sweep behind If(`backward`) (onnx/backward/backward-branch.ts):
 * - splitBackward keeps the objective's cone in the main graph and moves the rest to the branch;
 * - a run fed FORWARD_ONLY_TARGET gives the same activation and logits as a run with the
 *   gradient, bit for bit, and an empty gradient;
 * - LIG on the graph with the branch (activation and top-1 runs skip the backward) equals LIG on
 *   the graph without it, bit for bit: attributions, F_input, F_baseline, targets;
 * on the demo model (always there) and stories260K (when ../shared has it), first and last layers.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import ort from 'onnxruntime-node';
import { loadTokenizer } from '../../../sources/tokenizer.ts';
import { ensureDemoModel } from '../../../sources/demo/demo-model.ts';
import { attributeByLength, createAttributionSession, type AttributionSession } from '../../../operators/attribution/lig.ts';
import { FORWARD_ONLY_TARGET, OBJECTIVE_OUTPUT, TARGET_INPUT, gradName, originalName, overrideName } from '../../../onnx/backward/graph.ts';
import { splitBackward } from '../../../onnx/backward/backward-branch.ts';
import { buildFeeds } from '../../../onnx/feeds.ts';
import { sharedPath } from '../../helpers/shared.ts';

test('splitBackward: the objective and what it reads stay in the main graph, the rest is the branch, both in order', () => {
  const n = (name: string, inputs: string[]) => ({ opType: 'Identity', inputs, outputs: [name], attrs: {}, name, domain: '' });
  const nodes = [n('c', []), n('s', ['logits', 'c']), n('d', ['s']), n('obj', ['s']), n('g1', ['d', 'c']), n('g2', ['g1', 'x'])];
  const { main, branch } = splitBackward(nodes, ['obj']);
  assert.equal(main.map((x) => x.name), ['c', 's', 'obj']);
  assert.equal(branch.map((x) => x.name), ['d', 'g1', 'g2']);
});

const PROMPTS = ['Once upon a time there was', 'The cat sat on the mat and', 'Lily went to the park'];

async function sessions(dir: string, tensor: string): Promise<[AttributionSession, AttributionSession]> {
  const m = path.join(dir, 'model.onnx');
  return [await createAttributionSession(m, tensor, { backwardBranch: true }), await createAttributionSession(m, tensor, { backwardBranch: false })];
}

async function forwardOnlyEqualsFull(s: AttributionSession, ids: Int32Array[]): Promise<void> {
  const S = ids[0].length;
  const feeds = buildFeeds(s.plan, { seqLen: S, lengths: Int32Array.from(ids, (x) => x.length), ids }, s.padId);
  feeds[TARGET_INPUT] = new ort.Tensor('int64', BigInt64Array.from(ids, () => 3n), [ids.length]);
  feeds[overrideName(s.tensor)] = new ort.Tensor('float32', new Float32Array(ids.length * S * s.width).fill(0.25), [ids.length, S, s.width]);
  const fetches = [originalName(s.tensor), OBJECTIVE_OUTPUT, s.logits, gradName(s.tensor)];
  const full = await s.session.run(feeds, fetches);
  const fwd = await s.session.run({ ...feeds, [TARGET_INPUT]: new ort.Tensor('int64', BigInt64Array.from(ids, () => BigInt(FORWARD_ONLY_TARGET)), [ids.length]) }, fetches);
  // The objective reads the target (GatherElements): compared where both runs have the same one.
  for (const name of [originalName(s.tensor), s.logits]) assert.equal(Array.from(fwd[name].data as Float32Array), Array.from(full[name].data as Float32Array), `${name} with backward = false`);
  assert.is((fwd[gradName(s.tensor)].data as Float32Array).length, 0, 'no gradient computed');
  assert.ok((full[gradName(s.tensor)].data as Float32Array).some((v) => v !== 0), 'the gradient with backward = true');
}

async function ligEqual(a: AttributionSession, b: AttributionSession, examples: { ids: Int32Array }[]): Promise<void> {
  const opts = { steps: 6, onWarning: () => {} };
  const ra = await attributeByLength(a, examples, a.tensor, opts);
  const rb = await attributeByLength(b, examples, b.tensor, opts);
  ra.forEach((r, i) => {
    assert.is(r.target, rb[i].target);
    assert.is(r.F_input, rb[i].F_input);
    assert.is(r.F_baseline, rb[i].F_baseline);
    assert.equal(Array.from(r.attributions), Array.from(rb[i].attributions), `example ${i}: attributions bit for bit`);
  });
}

const models: { name: string; dir: () => Promise<string | null>; layers: number[] }[] = [
  { name: 'demo model', dir: () => ensureDemoModel(), layers: [0, 1] },
  { name: 'stories260K', dir: async () => sharedPath('models/stories260K-onnx', 'backward branch on stories260K'), layers: [0, 4] },
];

for (const m of models)
  for (const layer of m.layers) {
    test(`${m.name} layer ${layer}: a forward-only run skips only the gradient; LIG with the branch == without it, bit for bit`, async () => {
      const dir = await m.dir();
      if (!dir) return;
      const tensor = `/model/layers.${layer}/mlp/act_fn/Mul_output_0`;
      const tok = await loadTokenizer(dir);
      const examples = PROMPTS.map((p) => ({ ids: tok.encode(p) }));
      const [a, b] = await sessions(dir, tensor);
      try {
        await forwardOnlyEqualsFull(a, [examples[0].ids, examples[0].ids]);
        await ligEqual(a, b, examples);
      } finally {
        await a.session.release();
        await b.session.release();
      }
    });
  }

test('opening an attribution session logs no ONNX Runtime warning (the branch keeps its own copies of the last-position Slices)', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'ORT warnings on stories260K') ?? (await ensureDemoModel());
  const lig = path.resolve(import.meta.dirname, '../../../operators/attribution/lig.ts');
  const code = `const { createAttributionSession } = await import(${JSON.stringify(lig)}); const s = await createAttributionSession(${JSON.stringify(path.join(dir, 'model.onnx'))}, '/model/layers.0/mlp/act_fn/Mul_output_0'); await s.session.release(); console.log('opened');`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /opened/);
  assert.not.match(r.stderr, /onnxruntime/, r.stderr.slice(0, 400));
});

test.run();
