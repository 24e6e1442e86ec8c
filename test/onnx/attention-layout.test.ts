/**
 * Feeds for onnxruntime-genai style models: right padding where the attention needs real tokens
 * first, [batch, kv_heads, past, head] past dims from configs or the graph's GroupQueryAttention,
 * seqlens_k / total_sequence_length inputs, and one line naming an input that cannot be fed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type ort from 'onnxruntime-node';
import { GraphBuilder, tensor } from '../../onnx/builder.ts';
import { readOnnxModel } from '../../onnx/model-reader.ts';
import { paddingSideFor, pastHintsFor } from '../../onnx/attention-layout.ts';
import { planInputs, buildFeeds, rowStart } from '../../onnx/feeds.ts';
import { sharedPath } from '../helpers/shared.ts';
import path from 'node:path';

function fakeSession(inputs: { name: string; type: string; shape: (number | string)[] }[]) {
  return { inputMetadata: inputs.map((m) => ({ ...m, isTensor: true })) } as unknown as ort.InferenceSession;
}

const genaiInputs = [
  { name: 'input_ids', type: 'int64', shape: ['batch_size', 'sequence_length'] },
  { name: 'attention_mask', type: 'int64', shape: ['batch_size', 'total_sequence_length'] },
  { name: 'seqlens_k', type: 'int32', shape: ['batch_size'] },
  { name: 'total_sequence_length', type: 'int32', shape: [] },
  { name: 'past_key_values.0.key', type: 'float32', shape: ['batch_size', 2, 'past_sequence_length', 'kv_cache_dim'] },
  { name: 'past_key_values.0.value', type: 'float32', shape: ['batch_size', 'kv_heads', 'past_sequence_length', 'kv_cache_dim'] },
];

test('genai past layout: symbolic head dims filled from hints; without hints, one line naming the input', () => {
  assert.throws(() => planInputs(fakeSession(genaiInputs), 'model.onnx'), (e: Error) => e.message.includes('"past_key_values.0.key"') && e.message.startsWith('model.onnx: '));
  const plan = planInputs(fakeSession(genaiInputs), 'model.onnx', { padSide: 'right', past: { kvHeads: 2, headSize: 16 } });
  const ids = [Int32Array.from([1, 5, 6]), Int32Array.from([1, 7])];
  const f = buildFeeds(plan, { seqLen: 3, lengths: Int32Array.from([3, 2]), ids }, 0);
  assert.equal(f['past_key_values.0.key'].dims, [2, 2, 0, 16]);
  assert.equal(f['past_key_values.0.value'].dims, [2, 2, 0, 16]);
  // Right padding: real tokens first; seqlens_k = length − 1; total_sequence_length = padded length.
  assert.equal(Array.from(f.input_ids.data as BigInt64Array, Number), [1, 5, 6, 1, 7, 0]);
  assert.equal(Array.from(f.attention_mask.data as BigInt64Array, Number), [1, 1, 1, 1, 1, 0]);
  assert.equal(Array.from(f.seqlens_k.data as Int32Array), [2, 1]);
  assert.equal(f.seqlens_k.dims, [2]);
  assert.equal(Array.from(f.total_sequence_length.data as Int32Array), [3]);
  assert.equal(f.total_sequence_length.dims, []);
  assert.is(rowStart(plan, 3, 2), 0);
  assert.is(rowStart({}, 3, 2), 1);
});

test('right padding: position ids count real tokens from 0, as if each row ran alone', () => {
  const plan = planInputs(fakeSession([...genaiInputs.slice(0, 2), { name: 'position_ids', type: 'int64', shape: ['b', 's'] }]), 'm', { padSide: 'right' });
  const f = buildFeeds(plan, { seqLen: 4, lengths: Int32Array.from([2, 4]), ids: [Int32Array.from([1, 9]), Int32Array.from([1, 2, 3, 4])] }, 0);
  const pos = Array.from(f.position_ids.data as BigInt64Array, Number);
  const mask = Array.from(f.attention_mask.data as BigInt64Array, Number);
  for (let b = 0; b < 2; b++) {
    let k = 0;
    for (let t = 0; t < 4; t++) if (mask[b * 4 + t]) assert.is(pos[b * 4 + t], k++);
  }
});

test('inputs that cannot be fed (static cache, recurrent state) are named with their type and shape', () => {
  for (const bad of [
    { name: 'token_type_ids', type: 'int64', shape: ['batch', 'seq'] },
    { name: 'recurrent_state', type: 'float32', shape: ['batch', 64] },
  ]) {
    assert.throws(
      () => planInputs(fakeSession([genaiInputs[0], bad]), 'model.onnx'),
      (e: Error) => e.message.startsWith(`model.onnx: model input "${bad.name}" is not understood (${bad.type} [${bad.shape.join(', ')}])`) && !e.message.includes('\n'),
    );
  }
});

test('cache_position is fed 0..S−1 (empty cache); a static cache (fixed past length) is refused naming it', () => {
  const plan = planInputs(fakeSession([genaiInputs[0], { name: 'cache_position', type: 'int64', shape: ['sequence_length'] }]), 'm');
  const f = buildFeeds(plan, { seqLen: 3, lengths: Int32Array.from([3, 1]), ids: [Int32Array.from([1, 2, 3]), Int32Array.from([1])] }, 0);
  assert.equal(Array.from(f.cache_position.data as BigInt64Array, Number), [0, 1, 2]);
  assert.throws(
    () => planInputs(fakeSession([genaiInputs[0], { name: 'past_key_values.0.key', type: 'float32', shape: [1, 4, 128, 16] }]), 'model.onnx'),
    (e: Error) => e.message.includes('model input "past_key_values.0.key" has shape [1,4,128,16]'),
  );
});

test('padding side and past hints from the graph: GroupQueryAttention → right, its kv heads and head size', () => {
  const g = new GraphBuilder('gqa');
  g.input('x', 'float', ['b', 's', 8]);
  g.initializer('w', tensor('float', [8, 32], new Float32Array(256)));
  g.node('MatMul', ['x', 'w'], ['qkv'], {}, { name: 'qkv_proj' });
  g.node('GroupQueryAttention', ['qkv', '', '', 'pk', 'pv', 'sk', 'tl'], ['o', 'pko', 'pvo'], { num_heads: 2, kv_num_heads: 1 }, { name: 'attn', domain: 'com.microsoft' });
  g.output('o');
  const m = readOnnxModel(g.toModel({ domains: { 'com.microsoft': 1 } }));
  assert.equal(paddingSideFor(m).side, 'right');
  assert.match(paddingSideFor(m).why, 'attn');
  // packed qkv width 32 = (2 + 2·1) heads × 8
  assert.equal(pastHintsFor(m, null, null), { kvHeads: 1, headSize: 8 });
  // genai_config.json and config.json win over the graph.
  assert.equal(pastHintsFor(m, null, { model: { decoder: { num_key_value_heads: 3, head_size: 5 } } }), { kvHeads: 3, headSize: 5 });
  assert.equal(pastHintsFor(m, { num_attention_heads: 4, num_key_value_heads: 2, hidden_size: 64 }, null), { kvHeads: 2, headSize: 16 });
  const plain = new GraphBuilder('mha');
  plain.input('x', 'float', ['b', 4]);
  plain.node('Softmax', ['x'], ['y']);
  plain.output('y');
  assert.equal(paddingSideFor(readOnnxModel(plain.toModel())).side, 'left');
});

test('genai-llama-fp32: planned from the real graph and genai_config.json', async () => {
  const dir = sharedPath('models/exporters/genai-llama-fp32', 'genai feeds');
  if (!dir) return;
  const m = readOnnxModel(path.join(dir, 'model.onnx'));
  try {
    assert.equal(paddingSideFor(m).side, 'right');
    assert.equal(pastHintsFor(m, null, null), { kvHeads: 2, headSize: 16 }); // the graph alone
  } finally {
    m.source.close();
  }
});

test.run();
