/**
 * SimplifiedLayerNormalization (ORT registers it in the ai.onnx domain only), SkipSimplifiedLayerNormalization
 * and SkipLayerNormalization: decomposition == ORT's kernel (with bias, beta, broadcast skip, the
 * sum output), EmbedLayerNormalization, each also on random shapes; then gradients (including γ
 * depending on the override, and EmbedLayerNormalization's word embeddings) == central differences.
 * rules-norm.test.ts keeps the original checks of these ops.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mulberry32 } from '../../../core/random.ts';
import { float } from '../../../onnx/builder.ts';
import { check } from './check.ts';
import { compareWithKernel, randomValues, type InputSpec, type OpCase } from './kernel-harness.ts';

const r = mulberry32(23);
const f = (name: string, dims: number[], scale = 1, offset = 0): InputSpec => ({ name, type: 'float32', dims, data: randomValues(r, dims.reduce((a, b) => a * b, 1), scale).map((v) => v + offset) });
const eps = { epsilon: float(1e-5) };

function embedCase(full: boolean): [OpCase, number[]] {
  const ids = (name: string, hi: number): InputSpec => ({ name, type: 'int32', dims: [2, 5], data: Array.from({ length: 10 }, () => Math.floor(r() * hi)) });
  const inputs: (InputSpec | '')[] = [ids('input_ids', 30), full ? ids('segment_ids', 2) : '', f('word_embedding', [30, 8]), f('position_embedding', [16, 8]), full ? f('segment_embedding', [2, 8]) : '', f('gamma', [8]), f('beta', [8])];
  if (full) inputs.push({ name: 'mask', type: 'int32', dims: [2, 5], data: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0] }, { name: 'position_ids', type: 'int32', dims: [2, 5], data: [0, 1, 2, 3, 4, 3, 4, 5, 6, 7] });
  return [{ op: 'EmbedLayerNormalization', inputs, attrs: eps, outputs: 3 }, [0, 2]];
}

const cases: [string, OpCase, number[]][] = [
  ['SimplifiedLayerNormalization (ai.onnx domain)', { op: 'SimplifiedLayerNormalization', domain: '', inputs: [f('x', [2, 5, 16], 3), f('scale', [16])], attrs: { axis: -1, ...eps }, outputs: 1 }, [0]],
  ['SimplifiedLayerNormalization, axis 1 of a 3-D input', { op: 'SimplifiedLayerNormalization', domain: '', inputs: [f('x', [2, 3, 4], 3), f('scale', [3, 4])], attrs: { axis: 1, ...eps }, outputs: 1 }, [0]],
  ['SkipSimplifiedLayerNormalization with bias, sum output', { op: 'SkipSimplifiedLayerNormalization', inputs: [f('input', [2, 5, 16], 2), f('skip', [2, 5, 16], 2), f('gamma', [16]), f('bias', [16])], attrs: eps, outputs: 4 }, [0, 3]],
  ['SkipLayerNormalization with beta and bias', { op: 'SkipLayerNormalization', inputs: [f('input', [2, 4, 8], 2, 0.5), f('skip', [2, 4, 8], 2), f('gamma', [8]), f('beta', [8]), f('bias', [8])], attrs: eps, outputs: 4 }, [0, 3]],
  ['SkipLayerNormalization with a broadcast skip [S, hidden], no beta', { op: 'SkipLayerNormalization', inputs: [f('input', [3, 4, 8], 2), f('skip', [4, 8], 2), f('gamma', [8])], attrs: eps, outputs: 4 }, [0, 3]],
  ['EmbedLayerNormalization with segments, mask and position ids', ...embedCase(true)],
  ['EmbedLayerNormalization, positions 0..S−1 (GPT-2 export without segments)', ...embedCase(false)],
];
// Random shapes: batch, sequence, hidden size, axis, broadcast skip, optional bias/beta, segments drawn.
const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
for (let k = 0; k < 5; k++) {
  const [B, S, W] = [int(1, 4), int(1, 6), int(1, 12)];
  const e = { epsilon: float(10 ** -int(3, 6)) };
  const axis = int(1, 2);
  const scaleDims = axis === 1 ? [S, W] : [W];
  cases.push([`SimplifiedLayerNormalization random shape #${k} [${B}, ${S}, ${W}], axis ${axis}`, { op: 'SimplifiedLayerNormalization', domain: '', inputs: [f('x', [B, S, W], 3), f('scale', scaleDims)], attrs: { axis, ...e }, outputs: 1 }, [0]]);
  const skip = r() < 0.3 ? [S, W] : [B, S, W];
  const withBias = r() < 0.5;
  cases.push([`SkipSimplifiedLayerNormalization random shape #${k} [${B}, ${S}, ${W}], skip [${skip}], bias ${withBias}`, { op: 'SkipSimplifiedLayerNormalization', inputs: [f('input', [B, S, W], 2), f('skip', skip, 2), f('gamma', [W]), withBias ? f('bias', [W]) : ''], attrs: e, outputs: 4 }, [0, 3]]);
  const withBeta = r() < 0.5;
  cases.push([`SkipLayerNormalization random shape #${k} [${B}, ${S}, ${W}], skip [${skip}], beta ${withBeta}, bias ${withBias}`, { op: 'SkipLayerNormalization', inputs: [f('input', [B, S, W], 2, 0.3), f('skip', skip, 2), f('gamma', [W]), withBeta ? f('beta', [W]) : '', withBias ? f('bias', [W]) : ''], attrs: e, outputs: 4 }, [0, 3]]);
  const [V, full] = [int(4, 40), r() < 0.5];
  const ids = (name: string, hi: number): InputSpec => ({ name, type: 'int32', dims: [B, S], data: Array.from({ length: B * S }, () => Math.floor(r() * hi)) });
  const inputs: (InputSpec | '')[] = [ids('input_ids', V), full ? ids('segment_ids', 3) : '', f('word_embedding', [V, W]), f('position_embedding', [S + 4, W]), full ? f('segment_embedding', [3, W]) : '', f('gamma', [W]), f('beta', [W])];
  if (full) inputs.push('', ids('position_ids', S + 4));
  cases.push([`EmbedLayerNormalization random shape #${k} [${B}, ${S}], vocabulary ${V}, hidden ${W}, segments and position_ids ${full}`, { op: 'EmbedLayerNormalization', inputs, attrs: e, outputs: 3 }, [0, 2]]);
}
for (const [name, c, outputs] of cases) {
  test(`${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(c);
    for (const k of outputs) assert.ok(relErr[k] !== null && relErr[k]! <= 1e-5, `output ${k}: relative error ${relErr[k]}`);
  });
}

const ms = { domains: { 'com.microsoft': 1 } };
check('SkipLayerNormalization with γ depending on the input', 'SkipLayerNormalization', (g, x, h) => {
  const [gamma] = g.node('ReduceMean', [g.node('Tanh', [x])[0]], 1, { axes: [0, 1], keepdims: 0 });
  const outs = g.node('SkipLayerNormalization', [x, g.node('Tanh', [x])[0], gamma, h.rand([6])], 4, eps, { domain: 'com.microsoft' });
  return { out: g.node('Add', [outs[0], outs[3]])[0], k: 6 };
}, ms);
check('SkipSimplifiedLayerNormalization with bias', 'SkipSimplifiedLayerNormalization', (g, x, h) => {
  const [y] = g.node('SkipSimplifiedLayerNormalization', [g.node('Mul', [x, x])[0], x, h.rand([6]), h.rand([6])], 1, eps, { domain: 'com.microsoft' });
  return { out: y, k: 6 };
}, ms);
check('EmbedLayerNormalization with its word embeddings computed from the activation', 'EmbedLayerNormalization', (g, x, h) => {
  // The activation [B, T, 6] reshaped to a [B·T, 6] table; ids 1..5 index into it. (ORT's shape
  // inference wants γ and β as constants of known shape.)
  const [table] = g.node('Reshape', [x, h.i64([-1, 6])]);
  const [ids] = g.node('Cast', ['input_ids'], 1, { to: 6 });
  const outs = g.node('EmbedLayerNormalization', [ids, '', table, h.rand([16, 6]), '', h.rand([6]), h.rand([6])], 3, eps, { domain: 'com.microsoft' });
  return { out: g.node('Add', [outs[0], g.node('Mul', [outs[2], h.f32([0.3], [])])[0]])[0], k: 6 };
}, ms);

test.run();
