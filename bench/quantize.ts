/**
 * Quantization throughput and memory: a generated Llama-shaped fp32 model (default 3 layers of
 * hidden 2048 / intermediate 5632 ≈ 620 MB of MatMul weights, external data), quantized to every
 * variant, each in its own process so peak RSS belongs to that variant alone.
 *
 *   node --import tsx bench/quantize.ts [layers] [variants,comma,separated] [rounds=2]
 *
 * Rounds alternate the variants' order (bench/lib.ts roundRobin) and each variant's best round is
 * reported, since the machine is shared. Prints MB/s of source weights, and peak RSS
 * (process.resourceUsage().maxRSS) against the baseline, the same process's RSS just before the
 * first tensor is read (the rewrite's onProgress(0, n)), in units of the largest tensor.
 * Goals (issue 12 goal 4, issue 11 part 4): ≥ 100 MB/s for every variant, and
 * peak RSS ≤ baseline + 3 × the largest tensor. With QUANTLENS_BENCH_OUT set (bench/run.ts sets
 * it), the results and goals are written there as JSON.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraphBuilder, tensor } from '../onnx/builder.ts';
import { quantizeModel, QUANT_VARIANTS, type QuantVariant } from '../onnx/quantize/index.ts';
import { mulberry32 } from '../core/random.ts';
import { roundRobin, type BenchGoal } from './lib.ts';
import { childMeasurement, streamingGoals, streamingRun, type StreamingRun } from './streaming-run.ts';

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
    let baselineKB = 0;
    // The baseline: this process (Node, tsx, the modules, the scanned graph) before the first tensor.
    const onProgress = (done: number) => {
      if (done === 0) baselineKB = process.memoryUsage().rss / 1024;
    };
    const t0 = process.hrtime.bigint();
    const r = await quantizeModel(a, b as QuantVariant, c, { onProgress });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ seconds, baselineKB, maxRssKB: process.resourceUsage().maxRSS, quantized: r.quantized.length }));
  }
}

type VariantRun = { variant: QuantVariant } & StreamingRun;

function quantizeOnce(src: string, dir: string, v: QuantVariant, weightsMB: number, largestMB: number): VariantRun | null {
  const out = path.join(dir, `model_${v}.onnx`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--quantize', src, v, out], { encoding: 'utf8', maxBuffer: 1 << 24 });
  try {
    if (r.status !== 0) {
      console.log(`${v}: FAILED ${r.stderr.split('\n').slice(-5).join(' ')}`);
      return null;
    }
    const outputMB = (statSync(out).size + (safeSize(`${out}.data`) ?? 0)) / 2 ** 20;
    return { variant: v, ...streamingRun(childMeasurement(r.stdout), weightsMB, largestMB, outputMB) };
  } finally {
    rmSync(out, { force: true });
    rmSync(`${out}.data`, { force: true });
  }
}

function goalsOf(best: VariantRun[], rounds: number, weightsMB: number): BenchGoal[] {
  const detail = `best of ${rounds} rounds, ${weightsMB.toFixed(0)} MB fp32 source`;
  return best.flatMap((r) =>
    streamingGoals(r, { throughput: `quantize ${r.variant}: MB/s of source weights`, memory: `quantize ${r.variant}: (peak RSS − baseline) ÷ largest tensor` }, detail));
}

async function main(): Promise<void> {
  const layers = Number(process.argv[2] ?? 3);
  const variants = (process.argv[3]?.split(',') ?? QUANT_VARIANTS) as QuantVariant[];
  const rounds = Number(process.argv[4] ?? 2);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-bench-quant-'));
  try {
    const src = path.join(dir, 'model.onnx');
    const t0 = Date.now();
    const gen = spawnSync(process.execPath, ['--import', 'tsx', self, '--generate', src, String(layers)], { stdio: 'inherit' });
    if (gen.status !== 0) throw new Error('model generation failed');
    const weightsMB = statSync(`${src}.data`).size / 2 ** 20;
    const largestMB = (HIDDEN * INTER * 4) / 2 ** 20;
    console.log(`generated ${layers} layers: ${weightsMB.toFixed(0)} MB of fp32 weights (largest tensor ${largestMB.toFixed(1)} MB) in ${((Date.now() - t0) / 1000).toFixed(1)} s; load average ${os.loadavg()[0].toFixed(2)}`);
    const tasks = Object.fromEntries(variants.map((v) => [v, async () => quantizeOnce(src, dir, v, weightsMB, largestMB)]));
    const all = await roundRobin(rounds, tasks);
    console.log('variant        MB/s   seconds  baseline MB  peak RSS MB  (peak − baseline) ÷ largest  output MB   (best round; every round\'s MB/s)');
    const best: VariantRun[] = [];
    for (const v of variants) {
      const runs = all.map((r) => r.results[v]).filter((x): x is VariantRun => x !== null);
      if (runs.length === 0) continue;
      const b = runs.reduce((x, y) => (y.seconds < x.seconds ? y : x));
      best.push(b);
      console.log(
        `${v.padEnd(13)} ${b.mbPerSecond.toFixed(1).padStart(6)} ${b.seconds.toFixed(2).padStart(9)} ${b.baselineMB.toFixed(0).padStart(12)} ${b.peakMB.toFixed(0).padStart(12)} ${b.rssOverBaselineTensors.toFixed(2).padStart(27)} ${b.outputMB.toFixed(0).padStart(10)}   ${runs.map((x) => x.mbPerSecond.toFixed(0)).join(', ')}`,
      );
    }
    const out = process.env.QUANTLENS_BENCH_OUT;
    if (out) writeFileSync(out, JSON.stringify({ layers, weightsMB, largestMB, rounds, runs: all, best, goals: goalsOf(best, rounds, weightsMB) }, null, 2));
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
