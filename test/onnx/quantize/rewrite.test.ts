import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { rewriteModel } from '../../../onnx/quantize/rewrite.ts';
import { selectTargets } from '../../../onnx/quantize/targets.ts';
import { nbitsEmitter } from '../../../onnx/quantize/matmul-nbits.ts';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { gaussian, identity, runY, tmpDir, writeMatMulModel } from './fixtures.ts';

test('over-2-GiB path: new tensors go to <out>.data (64-byte aligned) and ORT reads the same weights as the inline file', async () => {
  const dir = tmpDir();
  const K = 64, N = 48;
  const src = writeMatMulModel(dir, K, N, gaussian(K * N, 5, 0.1));
  const inline = path.join(dir, 'inline.onnx');
  await quantizeModel(src, 'q4', inline, { includeLmHead: true });
  const m = readOnnxModel(src);
  const { targets } = selectTargets(m, true);
  const ext = path.join(dir, 'ext.onnx');
  rewriteModel({ model: m, targets, emitter: nbitsEmitter(4, 32, true) }, { tmpOnnx: ext, finalOnnx: ext, openData: () => `${ext}.data`, forceExternal: true });
  m.source.close();
  assert.ok(existsSync(`${ext}.data`));
  const q = readOnnxModel(ext);
  const packed = [...q.initializers.values()].find((t) => t.name.endsWith('_q4'))!;
  assert.is(packed.location.kind, 'external');
  assert.is(packed.location.offset % 64, 0);
  assert.ok(statSync(ext).size < statSync(inline).size);
  q.source.close();
  assert.equal(Array.from(await runY(ext, identity(K), K, K)), Array.from(await runY(inline, identity(K), K, K)));
});

test('a weight shared by two MatMuls is quantized once; a weight also used elsewhere keeps its float initializer', async () => {
  const { GraphBuilder, tensor } = await import('../../../onnx/builder.ts');
  const { writeFileSync } = await import('node:fs');
  const dir = tmpDir();
  const g = new GraphBuilder('shared');
  g.input('X', 'float', ['m', 32]);
  g.initializer('W', tensor('float', [32, 32], gaussian(32 * 32, 1, 0.1)));
  g.initializer('V', tensor('float', [32, 32], gaussian(32 * 32, 2, 0.1)));
  g.node('MatMul', ['X', 'W'], ['a'], {}, { name: 'mm_a' });
  g.node('MatMul', ['a', 'W'], ['b'], {}, { name: 'mm_b' });
  g.node('MatMul', ['b', 'V'], ['c'], {}, { name: 'mm_c' });
  g.node('Add', ['c', 'V'], ['d'], {}, { name: 'uses_V' });
  g.node('Relu', ['d'], ['Y']);
  g.output('Y', 'float', ['m', 32]);
  const src = path.join(dir, 'shared.onnx');
  writeFileSync(src, g.toModel({ opset: 17 }));
  const out = path.join(dir, 'q.onnx');
  const r = await quantizeModel(src, 'int8', out);
  assert.equal(r.quantized, ['mm_a', 'mm_b', 'mm_c']);
  const q = readOnnxModel(out);
  assert.not.ok(q.initializers.has('W'), 'W replaced everywhere → dropped');
  assert.ok(q.initializers.has('V'), 'V still feeds Add → kept');
  assert.is([...q.initializers.keys()].filter((n) => n.startsWith('W_q8')).length, 1);
  assert.equal(q.nodes.filter((n) => n.opType === 'MatMulNBits').map((n) => n.name), ['mm_a', 'mm_b', 'mm_c']);
  q.source.close();
  const y = await runY(out, gaussian(32 * 32, 4), 32, 32); // Add(c, V) needs 32 rows
  assert.ok(y.every(Number.isFinite));
});

test.run();
