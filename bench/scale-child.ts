/**
 * The child process of bench/scale.ts. Two jobs:
 *
 *   node --import tsx bench/scale-child.ts generate <dir> <config.json>   seeded Llama → model folder
 *   node --import tsx bench/scale-child.ts run <pipeline.yaml> <cacheDir>  one pipeline, by phase
 *
 * Each finished phase prints one line `PHASE {"name", "seconds", "peakRssBytes"}` on stdout as it
 * ends, so the parent still has the earlier phases when a later one is killed (out of memory).
 * Peak RSS per phase: Linux's VmHWM, reset at each phase start through /proc/self/clear_refs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SeededRandom } from '../core/random.ts';
import { isQuantlensError } from '../core/errors.ts';
import type { LlamaConfig } from '../onnx/models/llama-config.ts';
import { writeModelFolder, type AnyLlamaWeights } from '../onnx/models/llama-graph.ts';
import { demoTokenizerFiles } from '../sources/demo/demo-tokenizer.ts';
import { openModelFolder } from '../sources/model/folder.ts';
import { loadPipeline } from '../pipelines/load.ts';
import { runPipeline } from '../pipelines/run.ts';
import { resolvePrecisionModel } from '../pipelines/precisions.ts';
import { RunMeasures } from '../pipelines/measures.ts';
import { SalienceMeasure } from '../pipelines/salience.ts';
import { checkMemoryBudget, estimateMemory, modelShape } from '../pipelines/budget.ts';
import { readOnnxModel } from '../onnx/model-reader.ts';
import { resolveLayers } from '../onnx/capture.ts';

function vmHwmBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

function vmRssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

function resetPeak(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // not Linux, or not allowed: peaks are then cumulative (reported as such by the parent)
  }
}

/** Time and peak RSS of phases; a phase may be entered several times (salience per batch). */
class Phases {
  private acc = new Map<string, { seconds: number; peak: number; increase: number }>();
  private current: { name: string; t0: number; rss0: number } | null = null;

  enter(name: string): string | null {
    const prev = this.leave();
    resetPeak();
    this.current = { name, t0: performance.now(), rss0: vmRssBytes() };
    return prev;
  }

  leave(): string | null {
    if (!this.current) return null;
    const { name, t0, rss0 } = this.current;
    const a = this.acc.get(name) ?? { seconds: 0, peak: 0, increase: 0 };
    a.seconds += (performance.now() - t0) / 1000;
    const peak = vmHwmBytes();
    a.peak = Math.max(a.peak, peak);
    // What the phase itself added over the RSS it started from (salience: over the open sessions).
    a.increase = Math.max(a.increase, peak - rss0);
    this.acc.set(name, a);
    this.current = null;
    return name;
  }

  /** Print a phase's line (once it will not be entered again). */
  report(name: string): void {
    const a = this.acc.get(name);
    if (a) console.log(`PHASE ${JSON.stringify({ name, seconds: a.seconds, peakRssBytes: a.peak, peakIncreaseBytes: a.increase })}`);
  }
}

/** Seeded weights as loaders, so the builder holds one tensor at a time (N(0, 1/in) as the demo model). */
function loaderWeights(cfg: LlamaConfig, seed: number): AnyLlamaWeights {
  const rng = new SeededRandom(seed);
  const H = cfg.hiddenSize, F = cfg.intermediateSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
  const linear = (out: number, inp: number) => () => rng.normalArray(out * inp, 1 / Math.sqrt(inp));
  const gain = () => () => rng.normalArray(H, 0.1, 1);
  return {
    embed: () => rng.normalArray(cfg.vocabSize * H, 1),
    layers: Array.from({ length: cfg.numLayers }, () => ({ inputNorm: gain(), q: linear(q, H), k: linear(kv, H), v: linear(kv, H), o: linear(H, q), postNorm: gain(), gate: linear(F, H), up: linear(F, H), down: linear(H, F) })),
    finalNorm: gain(),
    lmHead: linear(cfg.vocabSize, H),
  };
}

async function generate(dir: string, cfgFile: string): Promise<void> {
  const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as LlamaConfig;
  const { tokenizerJson, tokenizerConfig } = demoTokenizerFiles(cfg.maxPositions);
  const phases = new Phases();
  phases.enter('generate');
  await writeModelFolder(dir, cfg, loaderWeights(cfg, 0), tokenizerJson, tokenizerConfig, { quantlens_demo: 'bench/scale: seeded random weights' });
  phases.leave();
  phases.report('generate');
}

/** Wrap an async method so its calls count as `name` and the caller's phase resumes after. */
function timeMethod(proto: any, method: string, phases: Phases, name: string): void {
  const orig = proto[method];
  proto[method] = async function (this: unknown, ...a: unknown[]) {
    const prev = phases.enter(name);
    try {
      return await orig.apply(this, a);
    } finally {
      phases.leave();
      if (prev) phases.enter(prev);
    }
  };
}

async function run(file: string, cacheDir: string): Promise<void> {
  const cfg = loadPipeline(file);
  const phases = new Phases();
  const folder = await openModelFolder(cfg.model);
  // The run's own memory check, before the quantization done here ahead of it (plan.ts repeats it).
  const graph = readOnnxModel(folder.onnxPath);
  try {
    const sites = resolveLayers(graph, cfg.layers, folder.config, 'layers');
    checkMemoryBudget(estimateMemory(graph, cfg, sites, modelShape(graph, folder.config, folder.vocabSize)), `${path.basename(file)}: memory_budget_gb`);
  } finally {
    graph.source.close();
  }
  // Quantize first, phase by phase, into the cache the run then reads (same key: same settings).
  for (const p of cfg.precisions.filter((x) => x !== 'fp32')) {
    phases.enter(`quantize ${p}`);
    const r = await resolvePrecisionModel(folder, p, cfg, 'fp32', cacheDir);
    phases.leave();
    phases.report(`quantize ${p}`);
    console.log(`INFO ${JSON.stringify({ precision: p, source: r.source })}`);
  }
  phases.enter('plan (sessions)');
  timeMethod(RunMeasures.prototype, 'open', phases, 'attribution graphs');
  timeMethod(SalienceMeasure.prototype, 'update', phases, 'salience');
  // The end of the run (tables, calibration, summary, report) starts with closing the predictions.
  const origClose = RunMeasures.prototype.closePredictions;
  RunMeasures.prototype.closePredictions = async function (this: RunMeasures) {
    phases.enter('finish (tables, report)');
    return origClose.apply(this);
  };
  let planned = false;
  const log = (line: string) => {
    // runPipeline logs its first line once the plan (sessions included) is ready.
    if (!planned) {
      planned = true;
      phases.leave();
      phases.report('plan (sessions)');
      phases.enter('inference + estimators');
    }
    process.stderr.write(line + '\n');
  };
  const origOpen = RunMeasures.prototype.open;
  RunMeasures.prototype.open = async function (this: RunMeasures, ...a: Parameters<typeof origOpen>) {
    const r = await origOpen.apply(this, a);
    phases.report('attribution graphs');
    return r;
  };
  const res = await runPipeline(cfg, { quiet: true, report: true, cacheDir, log });
  phases.leave();
  for (const name of ['inference + estimators', 'salience', 'finish (tables, report)']) phases.report(name);
  console.log(`INFO ${JSON.stringify({ memory: res.summary.memory, examples: res.summary.dataset.examples })}`);
}

const [job, a, b] = process.argv.slice(2);
try {
  if (job === 'generate') await generate(a, b);
  else if (job === 'run') await run(a, b);
  else throw new Error(`usage: scale-child.ts generate <dir> <config.json> | run <pipeline.yaml> <cacheDir>`);
} catch (e) {
  // As the CLI: a user-facing error is its one line; anything else keeps its stack.
  console.error(isQuantlensError(e) ? `quantlens: ${e.message}` : e);
  process.exitCode = 1;
}
