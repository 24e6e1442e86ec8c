/**
 * The padding probe: a model that reads real tokens from column 0 without declaring it (a
 * mask-ignoring cumulative sum) is switched to right padding; one that no padding side can run
 * correctly (a mask-ignoring sum over the whole sequence) is refused in one line; a model that
 * honours its mask keeps the side chosen from its attention.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../../onnx/builder.ts';
import { augmentForRun } from '../../onnx/augment.ts';
import { planInputs } from '../../onnx/feeds.ts';
import { SeededRandom } from '../../core/random.ts';
import { confirmPaddingSide } from '../../pipelines/padding-probe.ts';
import type { PrecisionRunner } from '../../operators/infer.ts';
import type { TextTokenizer } from '../../sources/tokenizer.ts';

const V = 16, D = 4;

/** ids → embedding → mix over the sequence → logits. */
async function runnerFor(mix: (g: GraphBuilder, x: string) => string): Promise<PrecisionRunner> {
  const rnd = new SeededRandom(5);
  const g = new GraphBuilder('probe');
  g.input('input_ids', 'int64', ['b', 's']);
  g.input('attention_mask', 'int64', ['b', 's']);
  const x = g.node('Gather', [g.constF32(Array.from({ length: V * D }, () => rnd.normal()), [V, D]), 'input_ids'], 1, { axis: 0 })[0];
  g.node('MatMul', [mix(g, x), g.constF32(Array.from({ length: D * V }, () => rnd.normal()), [D, V])], ['logits']);
  g.output('logits', 'float', ['b', 's', V]);
  const session = await ort.InferenceSession.create(augmentForRun(g.toModel(), { captures: [], gatherLast: true }));
  const inputs = { inputMetadata: session.inputMetadata.filter((i) => !i.name.startsWith('quantlens/')) } as Pick<ort.InferenceSession, 'inputMetadata'>;
  return { precision: 'fp32', session, plan: planInputs(inputs, 'probe.onnx'), sites: [] };
}

const tok = { encode: () => Int32Array.from({ length: 12 }, (_, i) => 1 + (i % (V - 1))), padId: 0 } as unknown as TextTokenizer;
const left = { side: 'left' as const, why: 'attention honours the mask' };

test('a per-token model keeps left padding', async () => {
  const r = await runnerFor((g, x) => g.node('Relu', [x])[0]);
  assert.equal(await confirmPaddingSide([r], r, tok, left, { maxContext: 64 }), left);
  assert.is(r.plan.padSide, 'left');
});

test('real tokens read from column 0 (mask ignored, causal): switched to right padding, and every runner follows', async () => {
  const r = await runnerFor((g, x) => g.node('CumSum', [x, g.constI64([1], [])])[0]);
  const other = await runnerFor((g, x) => g.node('CumSum', [x, g.constI64([1], [])])[0]);
  const got = await confirmPaddingSide([r, other], r, tok, left, { maxContext: 64 });
  assert.is(got.side, 'right');
  assert.match(got.why, 'left padding did not');
  assert.is(r.plan.padSide, 'right');
  assert.is(other.plan.padSide, 'right');
});

test('a model no padding side can run (sum over the whole sequence): refused in one line', async () => {
  const r = await runnerFor((g, x) => g.node('Add', [x, g.node('ReduceSum', [x, g.constI64([1])], 1, { keepdims: 1 })[0]])[0]);
  try {
    await confirmPaddingSide([r], r, tok, left, { maxContext: 64, where: 'p.yaml: model' });
    assert.unreachable();
  } catch (e) {
    const msg = (e as Error).message;
    assert.ok(msg.startsWith('p.yaml: model: a padded batch differs from its rows run alone') && msg.includes('does not honour its attention mask') && !msg.includes('\n'), msg);
  }
});

test.run();
