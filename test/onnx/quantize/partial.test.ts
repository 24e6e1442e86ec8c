/**
 * A model whose decoder linear weights cannot all be quantized is refused in one line naming the
 * node, with a non-zero exit and nothing written — unless the user allows it explicitly
 * (`quantization.allow_partial` / `--allow-partial`); then every weight kept in float is listed
 * with its reason in the record. Also: re-quantizing quantized weights is refused.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GraphBuilder, tensor } from '../../../onnx/builder.ts';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { resolvePrecision } from '../../../sources/model/precision-files.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { gaussian, runY, tmpDir } from './fixtures.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { rewriteModel } from '../../../onnx/quantize/rewrite.ts';
import { selectTargets } from '../../../onnx/quantize/targets.ts';
import type { VariantEmitter } from '../../../onnx/quantize/variants.ts';
import { sharedPath } from '../../helpers/shared.ts';

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


/** Rewrites one MatMul so that its weight is a 3-D [1, K, N] constant: still valid ONNX, same numbers, not quantizable. */
const threeDimensional: VariantEmitter = {
  weight(name, K, N, ctx) {
    const w = ctx.fresh(`${name}_3d`);
    return { tensors: [{ name: w, type: 'float', dims: [1, K, N] }], produce: (b) => ({ [w]: b }) };
  },
  nodes: (plan, a, y, _K, _N, mainName) => [{ opType: 'MatMul', inputs: [a, plan.tensors[0].name], outputs: [y], name: mainName }],
};

test('quantlens run on a real model with one 3-D decoder weight: one line naming the node, exit 1, nothing written; allow_partial runs and records it', () => {
  const src = sharedPath('models/stories260K-onnx', 'partial model pipeline');
  if (!src) return;
  const dir = tmpDir();
  const model = path.join(dir, 'model');
  mkdirSync(model);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) if (existsSync(path.join(src, f))) copyFileSync(path.join(src, f), path.join(model, f));
  const m = readOnnxModel(path.join(src, 'model.onnx'));
  const target = selectTargets(m, false).targets.find((t) => /layers\.1\/.*down_proj/.test(t.node.name))!;
  const file = path.join(model, 'model.onnx');
  rewriteModel({ model: m, targets: [target], emitter: threeDimensional }, { tmpOnnx: file, finalOnnx: file, openData: () => `${file}.data` });
  m.source.close();
  const yaml = (extra: string) => `model: model\nprecisions: [fp32, q4]\ndataset:\n  path: data.csv\n  limit: 4\noutput: out\n${extra}`;
  writeFileSync(path.join(dir, 'data.csv'), 'prompt,gold\nOnce upon a time,True\nThe cat,False\nA dog,True\nSun,False\n');
  const env = { ...process.env, CI: 'true', QUANTLENS_CACHE: path.join(dir, 'cache') };
  writeFileSync(path.join(dir, 'p.yaml'), yaml(''));
  const r = spawnSync(process.execPath, [bin, 'run', path.join(dir, 'p.yaml'), '--quiet'], { encoding: 'utf8', env });
  assert.is.not(r.status, 0);
  const lines = r.stderr.split('\n').filter((l) => l.trim());
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0], new RegExp(`node ${target.node.name.replace(/[/.]/g, '\\$&')} stays in float: weight .*is 3-D`));
  assert.not.ok(existsSync(path.join(dir, 'out')) && readdirSync(path.join(dir, 'out')).length > 0, 'nothing written');
  writeFileSync(path.join(dir, 'p.yaml'), yaml('quantization: {allow_partial: true}\n'));
  const ok = spawnSync(process.execPath, [bin, 'run', path.join(dir, 'p.yaml'), '--quiet'], { encoding: 'utf8', env });
  assert.is(ok.status, 0, ok.stderr);
  const rec = JSON.parse(readFileSync(path.join(dir, 'out', 'summary.json'), 'utf8')).precisions.q4.quantization.record;
  assert.equal(rec.kept_float.map((k: any) => k.node), [target.node.name, '/lm_head/MatMul']);
  assert.ok(rec.decoder_fraction_quantized < 1 && rec.decoder_fraction_quantized > 0.9, String(rec.decoder_fraction_quantized));
});

test.run();
