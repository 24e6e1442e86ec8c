import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FULL_HASH_LIMIT, modelHash, modelHashOnce } from '../../../sources/model/hash.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { tempDir } from '../../helpers/temp.ts';

test('hash of a multi-chunk .onnx plus a small external data file equals a whole-buffer sha256', async () => {
  const dir = tempDir('ql-hash-');
  const onnx = path.join(dir, 'model.onnx');
  const bytes = randomBytes(3 * (1 << 20) + 12345); // several 1 MiB stream chunks
  writeFileSync(onnx, bytes);
  const data = path.join(dir, 'model.onnx.data');
  const dataBytes = randomBytes(1000);
  writeFileSync(data, dataBytes);
  const expected = createHash('sha256').update(bytes).update(`\0external:model.onnx.data:1000\0`).update(dataBytes).digest('hex');
  assert.is(await modelHash({ onnxPath: onnx, externalData: [data] }), expected);

  // Any change of the .onnx bytes, of the data file's size or of its content changes the hash.
  const before = expected;
  dataBytes[500] ^= 1;
  writeFileSync(data, dataBytes);
  assert.is.not(await modelHash({ onnxPath: onnx, externalData: [data] }), before);
  writeFileSync(data, randomBytes(1001));
  assert.is.not(await modelHash({ onnxPath: onnx, externalData: [data] }), before);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(onnx, bytes);
  assert.is(await modelHash({ onnxPath: onnx, externalData: [] }), createHash('sha256').update(bytes).digest('hex'));
});

test('a large external data file is fingerprinted by evenly spaced pieces: a changed weight in a sampled piece changes the hash', async () => {
  const dir = tempDir('ql-hash-big-');
  const onnx = path.join(dir, 'model.onnx');
  writeFileSync(onnx, randomBytes(100));
  const data = path.join(dir, 'model.onnx.data');
  const size = FULL_HASH_LIMIT + (5 << 20);
  const big = Buffer.alloc(size, 7);
  writeFileSync(data, big);
  const h0 = await modelHash({ onnxPath: onnx, externalData: [data] });
  big[size - 1] ^= 1; // the last piece is always sampled
  writeFileSync(data, big);
  const h1 = await modelHash({ onnxPath: onnx, externalData: [data] });
  assert.is.not(h1, h0);
  const inPiece20 = Math.floor((20 * (size - (64 << 10))) / 63) + 10; // piece 20 of 0 … 63
  big[inPiece20] ^= 1;
  writeFileSync(data, big);
  assert.is.not(await modelHash({ onnxPath: onnx, externalData: [data] }), h1);
});

test('modelHashOnce equals modelHash, and a file of another size is hashed again', async () => {
  const dir = tempDir('ql-hash-once-');
  const onnx = path.join(dir, 'model.onnx');
  writeFileSync(onnx, randomBytes(300));
  const data = path.join(dir, 'model.onnx.data');
  writeFileSync(data, randomBytes(2000));
  const folder = { onnxPath: onnx, externalData: [data] };
  const first = await modelHashOnce(folder);
  assert.is(first, await modelHash(folder));
  assert.is(await modelHashOnce(folder), first);
  writeFileSync(data, randomBytes(2001));
  const second = await modelHashOnce(folder);
  assert.is.not(second, first);
  assert.is(second, await modelHash(folder));
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
