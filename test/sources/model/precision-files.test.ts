import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { resolvePrecision } from '../../../sources/model/precision-files.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { gaussian, tmpDir, writeMatMulModel } from '../../onnx/quantize/fixtures.ts';

// The single MatMul writes the graph output, so it counts as lm_head unless included.
const L = { includeLmHead: true };

function folder() {
  const dir = tmpDir('ql-resolve-');
  const src = writeMatMulModel(dir, 64, 16, gaussian(64 * 16, 2, 0.1));
  return { dir, src, cache: path.join(dir, 'cache') };
}

test('fp32 is the original; a variant is quantized once into the cache, then served from it', async () => {
  const { dir, src, cache } = folder();
  assert.equal(await resolvePrecision(dir, src, 'fp32', cache), { path: src, source: 'original', settings: { variant: 'fp32' } });
  const first = await resolvePrecision(dir, src, 'nf4', cache, L);
  assert.is(first.source, 'quantized');
  assert.match(first.path, /cache\/[0-9a-f]{64}\/model_nf4\.onnx$/);
  assert.is(first.settings.blockSize, 64);
  assert.is(first.settings.doubleQuant, true);
  assert.ok(readOnnxModel(first.path).nodes.some((n) => n.opType === 'MatMulBnb4'));
  const mtime = statSync(first.path).mtimeMs;
  const again = await resolvePrecision(dir, src, 'nf4', cache, L);
  assert.is(again.source, 'cache');
  assert.is(again.path, first.path);
  assert.is(statSync(again.path).mtimeMs, mtime);
  assert.equal(again.settings, JSON.parse(readFileSync(path.join(path.dirname(first.path), 'settings.json'), 'utf8')));
  // Different settings → a different cache entry.
  const other = await resolvePrecision(dir, src, 'nf4', cache, { ...L, doubleQuant: false });
  assert.is.not(other.path, first.path);
  // A changed source model → a different cache entry.
  writeMatMulModel(dir, 64, 16, gaussian(64 * 16, 3, 0.1));
  const changed = await resolvePrecision(dir, src, 'nf4', cache, L);
  assert.is(changed.source, 'quantized');
  assert.is.not(changed.path, first.path);
});

test('a matching prebuilt file is used; a prebuilt with the accuracy-level trap is rejected and recorded', async () => {
  const { dir, src, cache } = folder();
  mkdirSync(path.join(dir, 'onnx'));
  await quantizeModel(src, 'q4', path.join(dir, 'onnx', 'model_q4.onnx'), { includeLmHead: true });
  const r = await resolvePrecision(dir, src, 'q4', cache, L);
  assert.is(r.source, 'prebuilt');
  assert.is(r.path, path.join(dir, 'onnx', 'model_q4.onnx'));
  assert.is(r.settings.prebuilt, path.join('onnx', 'model_q4.onnx'));
  // Same op, different block size than asked for → not used.
  const r64 = await resolvePrecision(dir, src, 'q4', cache, { ...L, blockSize: 64 });
  assert.is(r64.source, 'quantized');
  assert.match(String(r64.settings.prebuiltRejected), /block_size 32, not 64/);
  // accuracy_level 4 (int8 activations) → rejected.
  const file = path.join(dir, 'onnx', 'model_q4.onnx');
  const bytes = readFileSync(file);
  const at = bytes.indexOf(Buffer.from('accuracy_level')) + 'accuracy_level'.length;
  assert.is(bytes[at], 0x18);
  bytes[at + 1] = 4;
  writeFileSync(file, bytes);
  const trap = await resolvePrecision(dir, src, 'q4', path.join(dir, 'cache2'), L);
  assert.is(trap.source, 'quantized');
  assert.match(String(trap.settings.prebuiltRejected), /accuracy_level 4/);
  // model_bnb4 with quant_type NF4, block 64 serves nf4
  copyFileSync(src, path.join(dir, 'plain.onnx'));
  await quantizeModel(src, 'nf4', path.join(dir, 'onnx', 'model_bnb4.onnx'), { includeLmHead: true });
  const nf4 = await resolvePrecision(dir, src, 'nf4', cache, L);
  assert.is(nf4.source, 'prebuilt');
  const fp4 = await resolvePrecision(dir, src, 'fp4', cache, L);
  assert.is(fp4.source, 'quantized');
});

test('unknown precision → CONFIG error', async () => {
  const { dir, src, cache } = folder();
  try {
    await resolvePrecision(dir, src, 'int3', cache);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.is((e as QuantlensError).code, 'CONFIG');
    assert.match((e as Error).message, /unknown precision "int3"/);
  }
});

test.run();
