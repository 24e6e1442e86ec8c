/**
 * Quantization throughput and memory: a generated Llama-shaped fp32 model (default 3 layers of
 * hidden 2048 / intermediate 5632 ≈ 620 MB of MatMul weights, external data), quantized to every
 * variant, each in its own process so peak RSS belongs to that variant alone.
 *
 *   node --import tsx bench/quantize.ts [layers] [variants,comma,separated]
 *
 * Prints MB/s of input weights and peak RSS (process.resourceUsage().maxRSS) ÷ largest tensor.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraphBuilder, tensor } from '../onnx/builder.ts';
import { quantizeModel, QUANT_VARIANTS, type QuantVariant } from '../onnx/quantize/index.ts';
import { mulberry32 } from '../core/random.ts';

const HIDDEN = 2048;
const INTER = 5632;
const VOCAB = 1000;
const self = fileURLToPath(import.meta.url);

function randomWeights(n: number, seed: number): Float32Array {
  const w = new Float32Array(n);
  const next = mulberry32(seed);
  for (let i = 0; i < n; i++) w[i] = (next() - 0.5) * 0.04; // uniform, std ≈ 0.0115
  return w;
}

async function generate(file: string, layers: number): Promise<void> {
  const g = new GraphBuilder('llama_shaped');
  g.input('hidden', 'float', ['tokens', HIDDEN]);
  let h = 'hidden';
  let seed = 1;
  const linear = (x: string, inF: number, outF: number, name: string) => {
    const w = g.initializer(`${name}.weight`, tensor('float', [inF, outF], randomWeights(inF * outF, seed++)));
    return g.node('MatMul', [x, w], [`${name}/MatMul_output_0`], {}, { name: `${name}/MatMul` })[0];
  };
  for (let l = 0; l < layers; l++) {
    const p = `/model/layers.${l}`;
    const q = linear(h, HIDDEN, HIDDEN, `${p}/self_attn/q_proj`);
    const k = linear(h, HIDDEN, HIDDEN, `${p}/self_attn/k_proj`);
    const v = linear(h, HIDDEN, HIDDEN, `${p}/self_attn/v_proj`);
    const qkv = g.node('Add', [g.node('Add', [q, k])[0], v])[0];
    const o = linear(qkv, HIDDEN, HIDDEN, `${p}/self_attn/o_proj`);
    const gate = linear(o, HIDDEN, INTER, `${p}/mlp/gate_proj`);
    const up = linear(o, HIDDEN, INTER, `${p}/mlp/up_proj`);
    const act = g.node('Mul', [g.node('Sigmoid', [gate])[0], up])[0];
    h = linear(act, INTER, HIDDEN, `${p}/mlp/down_proj`);
  }
  const logits = linear(h, HIDDEN, VOCAB, '/lm_head');
  g.node('Identity', [logits], ['logits']);
  g.output('logits', 'float', ['tokens', VOCAB]);
  await g.writeWithExternalData(file, `${file}.data`, { opset: 17 });
}

async function child(): Promise<void> {
  const [, , mode, a, b, c] = process.argv;
  if (mode === '--generate') return generate(a, Number(b));
  if (mode === '--quantize') {
    const t0 = process.hrtime.bigint();
    const r = await quantizeModel(a, b as QuantVariant, c);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ seconds, maxRssKB: process.resourceUsage().maxRSS, quantized: r.quantized.length }));
  }
}

async function main(): Promise<void> {
  const layers = Number(process.argv[2] ?? 3);
  const variants = (process.argv[3]?.split(',') ?? QUANT_VARIANTS) as QuantVariant[];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-bench-quant-'));
  try {
    const src = path.join(dir, 'model.onnx');
    const t0 = Date.now();
    const gen = spawnSync(process.execPath, ['--import', 'tsx', self, '--generate', src, String(layers)], { stdio: 'inherit' });
    if (gen.status !== 0) throw new Error('model generation failed');
    const weightsMB = statSync(`${src}.data`).size / 2 ** 20;
    const largestMB = (HIDDEN * INTER * 4) / 2 ** 20;
    console.log(`generated ${layers} layers: ${weightsMB.toFixed(0)} MB of fp32 weights (largest tensor ${largestMB.toFixed(1)} MB) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    console.log('variant        MB/s   seconds  peak RSS MB  RSS ÷ largest tensor  output MB');
    for (const v of variants) {
      const out = path.join(dir, `model_${v}.onnx`);
      const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--quantize', src, v, out], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (r.status !== 0) {
        console.log(`${v}: FAILED ${r.stderr.split('\n').slice(-5).join(' ')}`);
        continue;
      }
      const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
      const rssMB = res.maxRssKB / 1024;
      const outMB = (statSync(out).size + (safeSize(`${out}.data`) ?? 0)) / 2 ** 20;
      console.log(
        `${v.padEnd(13)} ${(weightsMB / res.seconds).toFixed(1).padStart(6)} ${res.seconds.toFixed(2).padStart(9)} ${rssMB.toFixed(0).padStart(12)} ${(rssMB / largestMB).toFixed(2).padStart(21)} ${outMB.toFixed(0).padStart(10)}`,
      );
      rmSync(out, { force: true });
      rmSync(`${out}.data`, { force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function safeSize(f: string): number | null {
  try {
    return statSync(f).size;
  } catch {
    return null;
  }
}

if (process.argv[2]?.startsWith('--')) await child();
else await main();
