import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { modelHash } from '../../../sources/model/hash.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { tempDir } from '../../helpers/temp.ts';

test('hash of a multi-chunk .onnx plus external data name/size equals a whole-buffer sha256', async () => {
  const dir = tempDir('ql-hash-');
  const onnx = path.join(dir, 'model.onnx');
  const bytes = randomBytes(3 * (1 << 20) + 12345); // several 1 MiB stream chunks
  writeFileSync(onnx, bytes);
  const data = path.join(dir, 'model.onnx.data');
  writeFileSync(data, randomBytes(1000));
  const expected = createHash('sha256').update(bytes).update(`\0external:model.onnx.data:1000`).digest('hex');
  assert.is(await modelHash({ onnxPath: onnx, externalData: [data] }), expected);

  // Any change of the .onnx bytes or of the data file's size changes the hash.
  const before = expected;
  writeFileSync(data, randomBytes(1001));
  assert.is.not(await modelHash({ onnxPath: onnx, externalData: [data] }), before);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(onnx, bytes);
  assert.is(await modelHash({ onnxPath: onnx, externalData: [] }), createHash('sha256').update(bytes).digest('hex'));
});

test('stories260K-onnx hash equals the sha256 in its README', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'model hash');
  if (!dir) return;
  const readme = readFileSync(path.join(dir, 'README.md'), 'utf8');
  const stated = /\| model\.onnx \| \d+ \| ([0-9a-f]{64}) \|/.exec(readme)?.[1];
  assert.ok(stated);
  assert.is(await modelHash({ onnxPath: path.join(dir, 'model.onnx'), externalData: [] }), stated);
});

test('missing file gives an IO error naming it', async () => {
  try {
    await modelHash({ onnxPath: '/nonexistent/model.onnx', externalData: [] });
    assert.unreachable();
  } catch (e: any) {
    assert.is(e.code, 'IO');
    assert.ok(e.message.includes('/nonexistent/model.onnx'));
  }
});

test.run();
