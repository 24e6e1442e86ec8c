/**
 * The built-in demo model: a small Llama with seeded random weights and a code-built tokenizer,
 * so quantlens runs end to end with no download. Generated once into
 * `<repo>/.cache/demo/<size>-<seed>/` (an installed package: the user cache) and reused while its
 * settings hash matches.
 * It is labelled as random in config.json and in the ONNX metadata: results on it mean nothing.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SeededRandom } from '../../core/random.ts';
import type { LlamaConfig } from '../../onnx/models/llama-config.ts';
import { writeModelFolder, type LlamaWeights } from '../../onnx/models/llama-graph.ts';
import { demoTokenizerFiles } from './demo-tokenizer.ts';
import { demoPromptsJsonl } from './demo-prompts.ts';

export type DemoSize = 'tiny' | 'bench';

export const DEMO_LABEL = 'demo model, random weights';
/** Bump when generation changes, so cached folders are rebuilt. */
const DEMO_FORMAT = 1;
const STAMP_FILE = 'quantlens-demo.json';
const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');
// An installed package's folder may be read-only (global installs) and is no place for data:
// there the demo model goes to the user cache that quantized variants use.
const DEMO_CACHE = REPO_ROOT.split(path.sep).includes('node_modules')
  ? path.join(process.env.QUANTLENS_CACHE ?? path.join(os.homedir(), '.cache', 'quantlens'), 'demo')
  : path.join(REPO_ROOT, '.cache', 'demo');

export function demoConfig(size: DemoSize, vocabSize: number): LlamaConfig {
  const base = { modelType: 'llama' as const, vocabSize, rmsNormEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half' as const, tieWordEmbeddings: false, attentionBias: false, bosId: 1, eosId: 2, padId: 0 };
  return size === 'tiny'
    ? { ...base, hiddenSize: 64, intermediateSize: 192, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 16, maxPositions: 256 }
    : { ...base, hiddenSize: 256, intermediateSize: 1024, numLayers: 4, numHeads: 8, numKvHeads: 4, headDim: 32, maxPositions: 512 };
}

/**
 * Seeded weights. Linear layers ~ N(0, 1/in) keep activations O(1) through the layers; norm
 * gains ~ 1 + N(0, 0.1²) so a graph that ignored them would be caught by tests.
 */
export function demoWeights(cfg: LlamaConfig, seed: number): LlamaWeights {
  const rng = new SeededRandom(seed);
  const H = cfg.hiddenSize;
  const F = cfg.intermediateSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  const linear = (out: number, inp: number) => rng.normalArray(out * inp, 1 / Math.sqrt(inp));
  const gain = () => rng.normalArray(H, 0.1, 1);
  return {
    embed: rng.normalArray(cfg.vocabSize * H, 1),
    layers: Array.from({ length: cfg.numLayers }, () => ({
      inputNorm: gain(),
      q: linear(q, H),
      k: linear(kv, H),
      v: linear(kv, H),
      o: linear(H, q),
      postNorm: gain(),
      gate: linear(F, H),
      up: linear(F, H),
      down: linear(H, F),
    })),
    finalNorm: gain(),
    lmHead: cfg.tieWordEmbeddings ? undefined : linear(cfg.vocabSize, H),
  };
}

export interface DemoModelOptions {
  /** Folder to write; default `<repo>/.cache/demo/<size>-<seed>` (installed: `$QUANTLENS_CACHE/demo/…`). */
  dir?: string;
  size?: DemoSize;
  seed?: number;
}

/** Path of the demo model folder, generating it when absent or generated with other settings. */
export async function ensureDemoModel(opts: DemoModelOptions = {}): Promise<string> {
  const size = opts.size ?? 'tiny';
  const seed = opts.seed ?? 0;
  const dir = opts.dir ?? path.join(DEMO_CACHE, `${size}-${seed}`);
  const { tokenizerJson, tokenizerConfig, vocabSize } = demoTokenizerFiles(size === 'tiny' ? 256 : 512);
  const cfg = demoConfig(size, vocabSize);
  const settings = JSON.stringify({ format: DEMO_FORMAT, size, seed, cfg });
  const hash = createHash('sha256').update(settings).digest('hex');
  const fresh = (d: string) => {
    const stampFile = path.join(d, STAMP_FILE);
    if (!existsSync(stampFile) || !existsSync(path.join(d, 'model.onnx'))) return false;
    try {
      return JSON.parse(readFileSync(stampFile, 'utf8')).settings_sha256 === hash;
    } catch {
      return false; // unreadable stamp: regenerate
    }
  };
  if (fresh(dir)) return dir;
  // Another process may fill the same cache meanwhile: a fresh folder found at the swap is kept.
  await writeModelFolder(dir, cfg, demoWeights(cfg, seed), tokenizerJson, tokenizerConfig, { quantlens_demo: DEMO_LABEL }, {
    keepExisting: fresh,
    metadata: { quantlens_demo: DEMO_LABEL },
    files: {
      'prompts.jsonl': demoPromptsJsonl(),
      [STAMP_FILE]: JSON.stringify({ settings_sha256: hash, size, seed, label: DEMO_LABEL }, null, 2) + '\n',
    },
  });
  return dir;
}
