/**
 * The models bench/pipeline.ts measures: the demo bench model (hidden 256, d_ff 1024, 4 layers)
 * and a larger seeded Llama closer to real proportions (hidden 768, d_ff 2048, 8 layers, ~53M
 * parameters), built with the project's own builder (onnx/models/llama-graph.ts, the demo's
 * weights and tokenizer) and cached under .cache/bench/ while its settings hash matches.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { LlamaConfig } from '../onnx/models/llama-config.ts';
import { llamaParameterCount, writeModelFolder } from '../onnx/models/llama-graph.ts';
import { demoConfig, demoWeights, ensureDemoModel } from '../sources/demo/demo-model.ts';
import { demoTokenizerFiles } from '../sources/demo/demo-tokenizer.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const STAMP = 'quantlens-bench-model.json';

export interface PipelineBenchModel {
  label: string;
  /** Folder given to the pipeline as `model:`. */
  dir: string;
  config: LlamaConfig;
  parameters: number;
}

/** hidden 768, d_ff 2048, 8 layers, 12 heads (4 kv): the "larger generated model". */
export function largeConfig(vocabSize: number): LlamaConfig {
  return { ...demoConfig('bench', vocabSize), hiddenSize: 768, intermediateSize: 2048, numLayers: 8, numHeads: 12, numKvHeads: 4, headDim: 64 };
}

export async function demoBenchModel(): Promise<PipelineBenchModel> {
  const dir = await ensureDemoModel({ size: 'bench' });
  const config = demoConfig('bench', demoTokenizerFiles(512).vocabSize);
  return { label: 'demo bench model', dir, config, parameters: llamaParameterCount(config) };
}

/**
 * hidden 2048, d_ff 5632, 8 layers, 32 heads (4 kv): TinyLlama-1.1B's layer shape (its 22 layers
 * cut to 8, ~0.35B parameters with the demo's small vocabulary), so the forward pass per captured
 * activation value is a real 1B-class model's: the statistics' share of a token's time is the
 * share they would have there, which the two smaller models overstate.
 */
export function realisticConfig(vocabSize: number): LlamaConfig {
  return { ...demoConfig('bench', vocabSize), hiddenSize: 2048, intermediateSize: 5632, numLayers: 8, numHeads: 32, numKvHeads: 4, headDim: 64 };
}

/** The larger model's folder, generated (a few seconds) when absent or built with other settings. */
export async function largeBenchModel(seed = 0): Promise<PipelineBenchModel> {
  return generatedBenchModel(largeConfig, seed);
}

/** The ~0.35B model of realisticConfig, generated (about a minute) when absent or built with other settings. */
export async function realisticBenchModel(seed = 0): Promise<PipelineBenchModel> {
  return generatedBenchModel(realisticConfig, seed);
}

async function generatedBenchModel(configOf: (vocabSize: number) => LlamaConfig, seed: number): Promise<PipelineBenchModel> {
  const { tokenizerJson, tokenizerConfig, vocabSize } = demoTokenizerFiles(512);
  const config = configOf(vocabSize);
  const hash = createHash('sha256').update(JSON.stringify({ config, seed, v: 1 })).digest('hex');
  const dir = path.join(REPO, '.cache', 'bench', `pipeline-h${config.hiddenSize}-f${config.intermediateSize}-l${config.numLayers}`);
  const stamp = path.join(dir, STAMP);
  const fresh = existsSync(stamp) && existsSync(path.join(dir, 'model.onnx')) && readStamp(stamp) === hash;
  if (!fresh) {
    await writeModelFolder(dir, config, demoWeights(config, seed), tokenizerJson, tokenizerConfig, { quantlens_demo: 'bench model, random weights' }, {
      files: { [STAMP]: JSON.stringify({ settings_sha256: hash }) + '\n' },
    });
  }
  return { label: `generated Llama (hidden ${config.hiddenSize}, d_ff ${config.intermediateSize}, ${config.numLayers} layers)`, dir, config, parameters: llamaParameterCount(config) };
}

function readStamp(file: string): string | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')).settings_sha256 ?? null;
  } catch {
    return null;
  }
}
