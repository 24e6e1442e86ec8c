/**
 * A real onnxruntime-transformers-optimizer GPT-2 (../shared/models/tiny-random-gpt2-fp32: opset 11,
 * com.microsoft Attention with the fused qkv weight inside, FastGelu, SkipLayerNormalization):
 * every variant quantizes 100% of the decoder linear weights, the Attention qkv weights included,
 * and runs in ONNX Runtime with finite logits that differ from fp32 (mean KL(fp32‖q) reported).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import path from 'node:path';
import { quantizeModel, quantSessionConfig, type QuantVariant } from '../../../onnx/quantize/index.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { readGraphQuantization } from '../../../onnx/quantize/graph-settings.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { tmpDir } from './fixtures.ts';

/** Last-position logits of 3 prompts of 7 tokens, empty past. */
async function logits(file: string): Promise<{ data: Float32Array; V: number }> {
  const s = await ort.InferenceSession.create(file, { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions);
  const B = 3, S = 7;
  const feeds: Record<string, ort.Tensor> = {};
  for (const m of s.inputMetadata as readonly { name: string; type?: string; shape?: readonly (number | string)[] }[]) {
    const int = (v: (i: number) => number, n: number, dims: number[]) =>
      m.type === 'int64' ? new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(v(i))), dims) : new ort.Tensor('int32', Int32Array.from({ length: n }, (_, i) => v(i)), dims);
    if (m.name === 'input_ids') feeds[m.name] = int((i) => (i * 37 + 11) % 900 + 3, B * S, [B, S]);
    else if (m.name === 'position_ids') feeds[m.name] = int((i) => i % S, B * S, [B, S]);
    else if (m.name === 'attention_mask') feeds[m.name] = m.type === 'float32' ? new ort.Tensor('float32', new Float32Array(B * S).fill(1), [B, S]) : int(() => 1, B * S, [B, S]);
    else if (m.name.startsWith('past')) {
      const dims = m.shape!.map((d) => (typeof d === 'number' ? d : /batch/i.test(d) ? B : 0));
      feeds[m.name] = new ort.Tensor('float32', new Float32Array(0), dims);
    } else throw new Error(`unexpected input ${m.name}`);
  }
  const r = await s.run(feeds);
  const out = r[s.outputNames[0]];
  await s.release();
  const V = out.dims[out.dims.length - 1] as number;
  const all = out.data as Float32Array;
  const data = new Float32Array(B * V);
  for (let b = 0; b < B; b++) data.set(all.subarray((b * S + S - 1) * V, (b * S + S) * V), b * V);
  return { data, V };
}

function klMean(p: Float32Array, q: Float32Array, V: number): number {
  let total = 0;
  const rows = p.length / V;
  for (let r = 0; r < rows; r++) {
    const lse = (x: Float32Array) => {
      let m = -Infinity, z = 0;
      for (let v = 0; v < V; v++) m = Math.max(m, x[r * V + v]);
      for (let v = 0; v < V; v++) z += Math.exp(x[r * V + v] - m);
      return m + Math.log(z);
    };
    const lp = lse(p), lq = lse(q);
    for (let v = 0; v < V; v++) {
      const a = p[r * V + v] - lp;
      total += Math.exp(a) * (a - (q[r * V + v] - lq));
    }
  }
  return total / rows;
}

test('ORT-optimizer GPT-2 (opset 11, com.microsoft Attention): every variant quantizes every decoder linear weight and runs', async () => {
  const dir = sharedPath('models/tiny-random-gpt2-fp32', 'Attention GPT-2 quantization');
  if (!dir) return;
  const src = path.join(dir, 'past.onnx');
  const ref = await logits(src);
  const tmp = tmpDir();
  const lines: string[] = [];
  for (const v of ['nf4', 'llm-int8', 'q4', 'int8', 'dynamic-int8'] as QuantVariant[]) {
    const out = path.join(tmp, `model_${v}.onnx`);
    const r = await quantizeModel(src, v, out);
    assert.is(r.record.decoder_fraction_quantized, 1, v);
    assert.ok(r.quantized.filter((n) => n.startsWith('GptAttention_') && !n.endsWith('matmul')).length === 5, `${v}: the 5 Attention qkv weights`);
    const m = readOnnxModel(out);
    assert.is(readGraphQuantization(m).record.decoder_fraction_quantized, 1, `${v}: written graph`);
    m.source.close();
    const q = await logits(out);
    assert.ok(q.data.every(Number.isFinite), `${v}: finite`);
    const kl = klMean(ref.data, q.data, ref.V);
    assert.ok(kl > 0 && kl < 1, `${v}: KL ${kl}`);
    lines.push(`${v} KL ${kl.toExponential(2)}`);
  }
  console.log(`  tiny-random-gpt2-fp32: ${lines.join(', ')}`);
});

test.run();
