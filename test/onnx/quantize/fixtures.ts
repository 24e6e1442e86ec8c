/** Shared by the quantize tests: single-MatMul models, deterministic numbers, ORT runs. */
import ort from 'onnxruntime-node';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GraphBuilder, tensor } from '../../../onnx/builder.ts';
import { readOnnxModel, readTensorBytes, type OnnxModel } from '../../../onnx/model-reader.ts';
import { floatToHalf } from '../../../onnx/dtypes.ts';
import { quantSessionConfig } from '../../../onnx/quantize/index.ts';
import { tempDir } from '../../helpers/temp.ts';
import { mulberry32 } from '../../../core/random.ts';

export function tmpDir(prefix = 'ql-quant-'): string {
  return tempDir(prefix);
}

/** Deterministic pseudo-random numbers in [0, 1): the project's one seeded PRNG. */
export const rng = mulberry32;

export function gaussian(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  return out;
}

/** Y = X @ W with W [K, N] an initializer; X [batch, K]; written to dir/name. */
export function writeMatMulModel(dir: string, K: number, N: number, w: Float32Array, opts: { name?: string; fp16?: boolean; opset?: number } = {}): string {
  const g = new GraphBuilder('single_matmul');
  const type = opts.fp16 ? 'float16' : 'float';
  g.input('X', type, ['m', K]);
  g.initializer('W', opts.fp16 ? tensor('float16', [K, N], floatToHalf(w)) : tensor('float', [K, N], w));
  g.node('MatMul', ['X', 'W'], ['Y'], {}, { name: '/model/layers.0/mlp/up_proj/MatMul' });
  g.output('Y', type, ['m', N]);
  const file = path.join(dir, opts.name ?? 'model.onnx');
  writeFileSync(file, g.toModel({ opset: opts.opset ?? 17 }));
  return file;
}

export async function runY(file: string, x: Float32Array, M: number, K: number, extra: Record<string, string> = quantSessionConfig()): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(file, { extra } as ort.InferenceSession.SessionOptions);
  const r = await s.run({ X: new ort.Tensor('float32', x, [M, K]) });
  await s.release();
  return r.Y.data as Float32Array;
}

export function identity(K: number): Float32Array {
  const x = new Float32Array(K * K);
  for (let i = 0; i < K; i++) x[i * K + i] = 1;
  return x;
}

/** The quantized model's node of a given op type and its initializers' raw bytes, by input index. */
export function quantizedNode(file: string, opType: string): { m: OnnxModel; inputs: (Uint8Array | null)[]; attrs: Record<string, number> } {
  const m = readOnnxModel(file);
  const node = m.nodes.find((n) => n.opType === opType);
  if (!node) throw new Error(`no ${opType} in ${file}`);
  const inputs = node.inputs.map((name) => {
    const t = m.initializers.get(name);
    return t ? readTensorBytes(m, t) : null;
  });
  const attrs: Record<string, number> = {};
  for (const [k, v] of Object.entries(node.attributes)) if (v.type === 'int') attrs[k] = v.value;
  return { m, inputs, attrs };
}

export function f32(b: Uint8Array): Float32Array {
  const c = b.slice();
  return new Float32Array(c.buffer, 0, c.length / 4);
}

/** Leftover temporary files from atomic writes in a folder. */
export function temporaries(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.includes('.tmp-'));
}
