import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { createSession, defaultSessionSettings, describeSettings, sessionOptions } from '../../onnx/session.ts';
import { sharedPath } from '../helpers/shared.ts';

function llamaFeeds(): Record<string, ort.Tensor> {
  const ids = BigInt64Array.from([1n, 450n, 4996n, 17354n]);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', ids, [1, 4]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 1n]), [1, 4]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n]), [1, 4]),
  };
  for (const i of [0, 1]) for (const kv of ['key', 'value']) feeds[`past_key_values.${i}.${kv}`] = new ort.Tensor('float16', new Uint16Array(0), [1, 1, 0, 16]);
  return feeds;
}

test('defaults and the metadata description', () => {
  const s = defaultSessionSettings();
  assert.is(s.intraOpThreads, os.availableParallelism());
  assert.is(s.interOpThreads, 1);
  assert.is(s.graphOptimizationLevel, 'all');
  const d = describeSettings({ ...s, extra: { 'session.set_denormal_as_zero': '1' } });
  assert.is(d['ort.version'], ort.env.versions.node);
  assert.is(d['ort.intra_op_threads'], String(os.availableParallelism()));
  assert.is(d['ort.config.session.set_denormal_as_zero'], '1');
  for (const v of Object.values(d)) assert.type(v, 'string');
  assert.equal(sessionOptions(s, '/x').extra, { 'session.model_external_initializers_file_folder_path': '/x' });
});

test('tiny-random-llama-fp16 loaded from bytes with external data equals loading from its path', async () => {
  const dir = sharedPath('models/tiny-random-llama-fp16', 'session from bytes');
  if (!dir) return;
  const file = path.join(dir, 'model.onnx');
  const bytes = readFileSync(file);
  // Without the data folder ORT looks next to the cwd and refuses: a clear MODEL error.
  try {
    await createSession(bytes, defaultSessionSettings(), { where: 'llama (bytes)' });
    assert.unreachable('should need the external data folder');
  } catch (e: any) {
    assert.is(e.code, 'MODEL', e.message);
    assert.ok(e.message.startsWith('llama (bytes): ONNX Runtime cannot load model bytes'), e.message);
  }
  const fromBytes = await createSession(bytes, defaultSessionSettings(), { externalDataDir: dir });
  const fromPath = await createSession(file, defaultSessionSettings());
  const a = (await fromBytes.run(llamaFeeds())).logits.data as Uint16Array;
  const b = (await fromPath.run(llamaFeeds())).logits.data as Uint16Array;
  assert.is(a.length, 4 * 32000);
  assert.equal(Array.from(a), Array.from(b));
  assert.ok(a.some((h) => h !== 0));
});

test('a broken model gives a MODEL error', async () => {
  try {
    await createSession(new Uint8Array([1, 2, 3, 4]), defaultSessionSettings(), { where: 'broken.onnx' });
    assert.unreachable();
  } catch (e: any) {
    assert.is(e.code, 'MODEL');
    assert.ok(e.message.startsWith('broken.onnx: '));
  }
});

test.run();
