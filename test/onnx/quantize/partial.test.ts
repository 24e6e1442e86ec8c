/**
 * A model whose decoder linear weights cannot all be quantized is refused in one line naming the
 * node, with a non-zero exit and nothing written — unless the user allows it explicitly
 * (`quantization.allow_partial` / `--allow-partial`); then every weight kept in float is listed
 * with its reason in the record. Also: re-quantizing quantized weights is refused.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GraphBuilder, tensor } from '../../../onnx/builder.ts';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { resolvePrecision } from '../../../sources/model/precision-files.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { gaussian, runY, tmpDir } from './fixtures.ts';

const bin = path.resolve(import.meta.dirname, '..', '..', '..', 'pipelines', 'bin.mjs');

/** up_proj: a plain MatMul; down_proj: Gemm with transA=1 (not rewritable); lm_head: MatMul → logits. */
function writePartial(dir: string): string {
  const g = new GraphBuilder('partial');
  g.input('X', 'float', [4, 16]);
  g.initializer('Wup', tensor('float', [16, 32], gaussian(16 * 32, 1, 0.1)));
  g.initializer('Wdown', tensor('float', [32, 16], gaussian(32 * 16, 2, 0.1)));
  g.initializer('Whead', tensor('float', [16, 8], gaussian(16 * 8, 3, 0.1)));
  g.node('MatMul', ['X', 'Wup'], ['h'], {}, { name: '/model/layers.0/mlp/up_proj/MatMul' });
  g.node('Transpose', ['h'], ['hT'], {}, { name: 't' });
  g.node('Gemm', ['hT', 'Wdown'], ['d'], { transA: 1 }, { name: '/model/layers.0/mlp/down_proj/Gemm' });
  g.node('MatMul', ['d', 'Whead'], ['Y'], {}, { name: '/lm_head/MatMul' });
  g.output('Y', 'float', [4, 8]);
  const file = path.join(dir, 'model.onnx');
  writeFileSync(file, g.toModel({ opset: 17 }));
  return file;
}

test('partial model: quantizeModel and resolvePrecision refuse in one line naming the node; nothing written', async () => {
  const dir = tmpDir();
  const src = writePartial(dir);
  const out = path.join(dir, 'q', 'model_q4.onnx');
  mkdirSync(path.dirname(out));
  for (const attempt of [() => quantizeModel(src, 'q4', out), () => resolvePrecision(dir, src, 'nf4', path.join(dir, 'cache'))]) {
    try {
      await attempt();
      assert.unreachable();
    } catch (e) {
      assert.instance(e, QuantlensError);
      const msg = (e as Error).message;
      assert.match(msg, /node \/model\/layers\.0\/mlp\/down_proj\/Gemm stays in float: Gemm with transA=1 is not supported; set quantization\.allow_partial: true/);
      assert.not.match(msg, /\n/);
    }
  }
  assert.equal(readdirSync(path.dirname(out)), []);
  assert.not.ok(existsSync(path.join(dir, 'cache')) && readdirSync(path.join(dir, 'cache')).length > 0, 'nothing cached');
});

test('partial model with allow_partial: quantized, and the record lists the float weights with their reasons', async () => {
  const dir = tmpDir();
  const src = writePartial(dir);
  const out = path.join(dir, 'model_int8.onnx');
  const r = await quantizeModel(src, 'int8', out, { allowPartial: true });
  assert.equal(r.quantized, ['/model/layers.0/mlp/up_proj/MatMul']);
  assert.equal(
    r.record.kept_float.map((k) => [k.node, k.reason, k.params]),
    [['/model/layers.0/mlp/down_proj/Gemm', 'Gemm with transA=1 is not supported', 512], ['/lm_head/MatMul', 'lm_head', 128]],
  );
  // Brute force: 512 of the 1024 decoder parameters (up 16×32 quantized, down 32×16 not).
  assert.is(r.record.decoder_fraction_quantized, 512 / 1024);
  assert.is(r.record.fraction_quantized, 512 / (1024 + 128));
  const y = await runY(out, gaussian(64, 4), 4, 16);
  assert.ok(y.every(Number.isFinite));
  const cached = await resolvePrecision(dir, src, 'q4', path.join(dir, 'cache'), { allowPartial: true });
  assert.is(cached.source, 'quantized');
  // The cached partial variant is refused again without the allowance.
  await resolvePrecision(dir, src, 'q4', path.join(dir, 'cache'), {}).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, /down_proj\/Gemm stays in float/),
  );
});

test('quantlens quantize on a partial model: one line, exit 1, no file; --allow-partial writes it and lists the float weight', () => {
  const dir = tmpDir();
  writePartial(dir);
  const out = path.join(dir, 'out');
  const r = spawnSync(process.execPath, [bin, 'quantize', dir, '--to', 'q4', '--out', out], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  assert.is.not(r.status, 0);
  const lines = r.stderr.split('\n').filter((l) => l.trim());
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0], /down_proj\/Gemm stays in float/);
  assert.not.ok(existsSync(out) && readdirSync(out).length > 0);
  const ok = spawnSync(process.execPath, [bin, 'quantize', dir, '--to', 'q4', '--out', out, '--allow-partial'], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  assert.is(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /50\.0% of decoder linear-weight parameters.*down_proj\/Gemm \(Gemm with transA=1 is not supported\)/);
  assert.ok(existsSync(path.join(out, 'model_q4.onnx')));
});

test.run();
