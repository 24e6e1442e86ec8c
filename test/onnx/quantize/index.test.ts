import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { quantizeModel, quantSessionConfig, type QuantVariant } from '../../../onnx/quantize/index.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { GraphBuilder } from '../../../onnx/builder.ts';
import { readOnnxModel, scanFields, bufferSource } from '../../../onnx/model-reader.ts';
import { ProtoWriter } from '../../../onnx/wire.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { temporaries, tmpDir } from './fixtures.ts';

const PROMPTS = [
  [1, 403, 407, 261, 378, 1149 % 512, 260, 2],
  [1, 365, 471, 263, 4, 299, 302, 350, 267, 411, 269, 455],
  [1, 45, 46, 47, 300, 301, 302, 303],
];

async function logits(file: string, ids: number[], extra: Record<string, string> = {}): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(file, { extra } as ort.InferenceSession.SessionOptions);
  const r = await s.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(ids.map(() => 1n)), [1, ids.length]),
  });
  await s.release();
  return r.logits.data as Float32Array;
}

/** mean over positions of KL(p‖q) with p, q = softmax of the logit rows (float64). */
function meanKL(p: Float32Array, q: Float32Array, V: number): number {
  let total = 0;
  const rows = p.length / V;
  for (let r = 0; r < rows; r++) {
    const lp = logSoftmax(p.subarray(r * V, (r + 1) * V));
    const lq = logSoftmax(q.subarray(r * V, (r + 1) * V));
    let kl = 0;
    for (let i = 0; i < V; i++) kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
    total += kl;
  }
  return total / rows;
}

function logSoftmax(x: Float32Array): Float64Array {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  const l = Math.log(s) + m;
  return Float64Array.from(x, (v) => v - l);
}

test('stories260K: every variant runs, logits close to fp32 but not equal; mean KL(fp32‖variant) printed', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'quantize end to end');
  if (!dir) return;
  const src = path.join(dir, 'model.onnx');
  const out = tmpDir();
  const ref = await Promise.all(PROMPTS.map((p) => logits(src, p)));
  const bounds: Record<QuantVariant, number> = { nf4: 0.5, fp4: 0.8, q4: 0.5, 'llm-int8': 0.05, int8: 0.01, 'dynamic-int8': 0.1 };
  const report: string[] = [];
  for (const v of Object.keys(bounds) as QuantVariant[]) {
    const file = path.join(out, `model_${v}.onnx`);
    const r = await quantizeModel(src, v, file);
    assert.is(r.quantized.length, 35, `${v}: 5 layers × 7 linear layers`);
    assert.equal(r.skipped, ['/lm_head/MatMul (lm_head)']);
    let kl = 0, top1 = 0, n = 0;
    for (let i = 0; i < PROMPTS.length; i++) {
      const y = await logits(file, PROMPTS[i], quantSessionConfig());
      assert.is(y.length, ref[i].length);
      kl += meanKL(ref[i], y, 512) / PROMPTS.length;
      for (let row = 0; row < y.length / 512; row++, n++) {
        const am = (a: Float32Array) => a.subarray(row * 512, (row + 1) * 512).reduce((b, x, j, arr) => (x > arr[b] ? j : b), 0);
        if (am(y) === am(ref[i])) top1++;
      }
    }
    report.push(`${v}: mean KL(fp32‖${v}) = ${kl.toExponential(3)}, top-1 agreement ${((100 * top1) / n).toFixed(0)}%`);
    assert.ok(kl > 0, `${v} logits equal fp32`);
    assert.ok(kl < bounds[v], `${v} KL ${kl} ≥ ${bounds[v]}`);
  }
  console.log(report.join('\n'));
});

test('fp16 model with external data: the quantized nodes take the fp16 activation (Casts) and the output is self-contained', async () => {
  const dir = sharedPath('models/tiny-random-llama-fp16', 'quantize fp16 source');
  if (!dir) return;
  const out = tmpDir();
  for (const v of ['nf4', 'q4', 'llm-int8'] as const) {
    const file = path.join(out, 'sub', `model_${v}.onnx`);
    const r = await quantizeModel(path.join(dir, 'model.onnx'), v, file);
    assert.is(r.quantized.length, 14);
    assert.ok(existsSync(`${file}.data`), 'external data re-homed beside the output');
    const m = readOnnxModel(file);
    for (const t of m.initializers.values()) if (t.location.kind === 'external') assert.is(t.location.file, `${file}.data`);
    assert.ok(m.nodes.some((n) => n.opType === 'Cast' && n.name === '/model/layers.0/mlp/up_proj/MatMul'));
    m.source.close();
    const s = await ort.InferenceSession.create(file, { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions);
    const T = 4;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from([1n, 450n, 4996n, 17354n]), [1, T]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 1n]), [1, T]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n]), [1, T]),
    };
    for (const n of s.inputNames) if (n.startsWith('past')) feeds[n] = new ort.Tensor('float16', new Uint16Array(0), [1, 1, 0, 16]);
    const y = (await s.run(feeds)).logits;
    assert.is(y.type, 'float16');
    assert.equal(y.dims, [1, T, 32000]);
    await s.release();
  }
});

function expectError(e: unknown, code: string): string {
  assert.instance(e, QuantlensError);
  assert.is((e as QuantlensError).code, code);
  const msg = (e as Error).message;
  assert.not.match(msg, /\n/);
  return msg;
}

test('bad input: no quantizable MatMul, corrupt file, read-only output → one-line errors, no files left', async () => {
  const dir = tmpDir();
  const g = new GraphBuilder('no_matmul');
  g.input('X', 'float', [2, 3]);
  g.node('Relu', ['X'], ['Y']);
  g.output('Y', 'float', [2, 3]);
  const noMatMul = path.join(dir, 'relu.onnx');
  writeFileSync(noMatMul, g.toModel());
  const out = path.join(dir, 'out', 'model_nf4.onnx');
  try {
    await quantizeModel(noMatMul, 'nf4', out);
    assert.unreachable();
  } catch (e) {
    assert.match(expectError(e, 'QUANTIZE'), /no quantizable MatMul/);
  }
  const corrupt = path.join(dir, 'corrupt.onnx');
  const sp = sharedPath('models/stories260K-onnx/model.onnx', 'corrupt model check');
  writeFileSync(corrupt, sp ? readFileSync(sp).subarray(0, 5000) : Buffer.from([0x3a, 0xff, 0xff, 0xff, 0x0f, 1, 2]));
  try {
    await quantizeModel(corrupt, 'q4', out);
    assert.unreachable();
  } catch (e) {
    expectError(e, 'MODEL');
  }
  assert.not.ok(existsSync(path.join(dir, 'out')) && readdirSync(path.join(dir, 'out')).length, 'nothing written');
  // Read-only output folder (as root permissions are not enforced, so a file stands in for the folder).
  if (!sp) return;
  const ro = path.join(dir, 'readonly');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) writeFileSync(ro, 'a file, not a folder');
  else {
    (await import('node:fs')).mkdirSync(ro);
    chmodSync(ro, 0o555);
  }
  try {
    await quantizeModel(sp, 'q4', path.join(ro, 'model_q4.onnx'));
    assert.unreachable();
  } catch (e) {
    assert.match(expectError(e, 'IO'), /model_q4\.onnx/);
  }
  if (!asRoot) {
    assert.equal(readdirSync(ro), []);
    chmodSync(ro, 0o755);
  }
  assert.equal(temporaries(dir), []);
});

test('re-encoding safety: unknown top-level field 99 and graph metadata_props survive byte for byte', async () => {
  const sp = sharedPath('models/stories260K-onnx/model.onnx', 'verbatim copy check');
  if (!sp) return;
  const dir = tmpDir();
  const unknown = new ProtoWriter().string(99, 'a field quantlens does not know').finish();
  // A second `graph` fragment carrying metadata_props (GraphProto field 16); protobuf merges it into the graph.
  const graphMeta = new ProtoWriter().message(7, (gw) => gw.message(16, (e) => e.string(1, 'origin').string(2, 'test'))).finish();
  const src = path.join(dir, 'model.onnx');
  writeFileSync(src, Buffer.concat([readFileSync(sp), unknown, graphMeta]));
  const out = path.join(dir, 'model_q4.onnx');
  await quantizeModel(src, 'q4', out);
  const bytes = readFileSync(out);
  assert.ok(bytes.includes(Buffer.from(unknown)), 'field 99 copied verbatim');
  const inner = graphMeta.subarray(2); // strip the outer graph tag + length
  assert.ok(bytes.includes(Buffer.from(inner)), 'graph metadata_props copied verbatim');
  // Everything top-level except graph and opset_import is byte-identical.
  const top = (b: Uint8Array) => [...scanFields(bufferSource(b), 0, b.length)].filter((f) => f.field !== 7 && f.field !== 8).map((f) => Buffer.from(b.subarray(f.fieldStart, f.end)).toString('hex'));
  assert.equal(top(bytes), top(readFileSync(src)));
  const s = await ort.InferenceSession.create(out, { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions);
  assert.ok(s.outputNames.includes('logits'));
  await s.release();
});

test.run();
