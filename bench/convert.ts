/**
 * Checkpoint conversion throughput and memory: a seeded Llama-shaped Hugging Face checkpoint
 * (bf16 safetensors, sharded with model.safetensors.index.json; default hidden 2048, d_ff 5632,
 * 4 layers, vocab 32000, untied head ≈ 0.34B parameters ≈ 670 MB of source weights) converted to
 * an fp32 ONNX folder with external data, in its own process so its peak RSS is the converter's.
 *
 *   node --import tsx bench/convert.ts [layers] [rounds=2]
 *
 * Prints MB/s of source weights (best of the rounds: the machine is shared), and peak RSS against
 * the process baseline (Node + ORT + the converter's modules, measured in the same process before
 * the first tensor) and the largest tensor (as float32, the form the converter holds it in).
 * Goals (issue 11 part 4): ≥ 100 MB/s, peak RSS ≤ baseline + 3 × the largest tensor. With
 * QUANTLENS_BENCH_OUT set (bench/run.ts sets it), the results and goals are written there as JSON.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { childMeasurement, streamingGoals, streamingRun, type StreamingRun } from './streaming-run.ts';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../core/random.ts';
import { demoTokenizerFiles } from '../sources/demo/demo-tokenizer.ts';
import { hfConfig, toBf16Bits } from '../test/onnx/convert/hf-checkpoint.ts';
import type { LlamaConfig } from '../onnx/models/llama-config.ts';

const self = fileURLToPath(import.meta.url);
const SHARDS = 3;

function benchConfig(layers: number): LlamaConfig {
  return {
    modelType: 'llama', hiddenSize: 2048, intermediateSize: 5632, numLayers: layers, numHeads: 16, numKvHeads: 16, headDim: 128,
    vocabSize: 32000, maxPositions: 2048, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false, attentionBias: false, ropeLayout: 'half',
  } as LlamaConfig;
}

function tensorShapes(cfg: LlamaConfig): [string, number[]][] {
  const H = cfg.hiddenSize, F = cfg.intermediateSize;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [cfg.vocabSize, H]]];
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}`;
    out.push([`${p}.input_layernorm.weight`, [H]], [`${p}.self_attn.q_proj.weight`, [H, H]], [`${p}.self_attn.k_proj.weight`, [H, H]], [`${p}.self_attn.v_proj.weight`, [H, H]], [`${p}.self_attn.o_proj.weight`, [H, H]]);
    out.push([`${p}.post_attention_layernorm.weight`, [H]], [`${p}.mlp.gate_proj.weight`, [F, H]], [`${p}.mlp.up_proj.weight`, [F, H]], [`${p}.mlp.down_proj.weight`, [H, F]]);
  }
  out.push(['model.norm.weight', [H]], ['lm_head.weight', [cfg.vocabSize, H]]);
  return out;
}

/**
 * Writes the checkpoint one tensor at a time (header first, then each tensor's bf16 bits), drawing
 * values from a 4096-entry table of uniform(−0.02, 0.02) bf16 codes so generation is I/O-bound.
 */
function generate(dir: string, layers: number): void {
  const cfg = benchConfig(layers);
  const rnd = mulberry32(7);
  const table = Uint16Array.from({ length: 4096 }, () => toBf16Bits((rnd() - 0.5) * 0.04));
  const shapes = tensorShapes(cfg);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < SHARDS; s++) {
    const file = `model-0000${s + 1}-of-0000${SHARDS}.safetensors`;
    const part = shapes.filter((_, i) => i % SHARDS === s);
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let offset = 0;
    for (const [name, shape] of part) {
      const bytes = 2 * shape.reduce((x, y) => x * y, 1);
      header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
      weightMap[name] = file;
      offset += bytes;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const fd = openSync(path.join(dir, file), 'w');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeSync(fd, len);
    writeSync(fd, json);
    const chunk = new Uint16Array(1 << 20);
    for (const [, shape] of part) {
      let left = shape.reduce((x, y) => x * y, 1);
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        for (let k = 0; k < n; k++) chunk[k] = table[(rnd() * 4096) | 0];
        writeSync(fd, new Uint8Array(chunk.buffer, 0, 2 * n));
        left -= n;
      }
    }
    closeSync(fd);
  }
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfig(cfg, { torch_dtype: 'bfloat16' })));
  const tok = demoTokenizerFiles(2048);
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok.tokenizerJson));
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tok.tokenizerConfig));
}

async function child(): Promise<void> {
  const [, , mode, a, b] = process.argv;
  if (mode === '--generate') return generate(a, Number(b));
  const { convertSafetensors } = await import('../onnx/convert/safetensors.ts');
  const baselineKB = process.memoryUsage().rss / 1024;
  const t0 = process.hrtime.bigint();
  await convertSafetensors(a, b);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ seconds, baselineKB, maxRssKB: process.resourceUsage().maxRSS }));
}

function convertOnce(src: string, out: string, sourceMB: number, largestMB: number): StreamingRun {
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--convert', src, out], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`conversion failed: ${r.stderr.split('\n').slice(-5).join(' ')}`);
    const outputMB = readdirSync(out).reduce((s, f) => s + statSync(path.join(out, f)).size, 0) / 2 ** 20;
    return streamingRun(childMeasurement(r.stdout), sourceMB, largestMB, outputMB);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

function main(): void {
  const layers = Number(process.argv[2] ?? 4);
  const rounds = Number(process.argv[3] ?? 2);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-bench-convert-'));
  try {
    const src = path.join(dir, 'checkpoint');
    mkdirSync(src);
    const t0 = Date.now();
    const gen = spawnSync(process.execPath, ['--import', 'tsx', self, '--generate', src, String(layers)], { stdio: 'inherit' });
    if (gen.status !== 0) throw new Error('checkpoint generation failed');
    const sourceMB = readdirSync(src).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + statSync(path.join(src, f)).size, 0) / 2 ** 20;
    const cfg = benchConfig(layers);
    const largestMB = (cfg.vocabSize * cfg.hiddenSize * 4) / 2 ** 20;
    console.log(`generated a ${layers}-layer bf16 checkpoint in ${SHARDS} shards: ${sourceMB.toFixed(0)} MB of source weights (largest tensor ${largestMB.toFixed(0)} MB as float32) in ${((Date.now() - t0) / 1000).toFixed(1)} s; load average ${os.loadavg()[0].toFixed(2)}`);
    const runs = Array.from({ length: rounds }, () => convertOnce(src, path.join(dir, 'out'), sourceMB, largestMB));
    const best = runs.reduce((x, y) => (y.seconds < x.seconds ? y : x));
    console.log(`convert: ${best.mbPerSecond.toFixed(1)} MB/s of source weights (best of ${rounds}: ${best.seconds.toFixed(1)} s; every round ${runs.map((r) => r.mbPerSecond.toFixed(0)).join(', ')} MB/s; output ${best.outputMB.toFixed(0)} MB fp32)   goal ≥ 100 MB/s: ${best.mbPerSecond >= 100 ? 'goal met' : 'GOAL MISSED'}`);
    console.log(`convert: peak RSS ${best.peakMB.toFixed(0)} MB = baseline ${best.baselineMB.toFixed(0)} MB + ${best.rssOverBaselineTensors.toFixed(2)} × largest tensor (${largestMB.toFixed(0)} MB); the whole model would be ${best.outputMB.toFixed(0)} MB`);
    const names = { throughput: 'convert (bf16 safetensors → fp32 ONNX): MB/s of source weights', memory: 'convert: (peak RSS − baseline) ÷ largest tensor' };
    const goals = streamingGoals(best, names, `best of ${rounds} rounds, ${sourceMB.toFixed(0)} MB source`);
    const out = process.env.QUANTLENS_BENCH_OUT;
    if (out) writeFileSync(out, JSON.stringify({ layers, sourceMB, largestMB, runs, best, goals }, null, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2]?.startsWith('--')) await child();
else main();
