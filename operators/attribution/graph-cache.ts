/**
 * Attribution graphs cached across runs, so the backward graph of a (model, layer, precision) is
 * built once (seconds on a real model) and later runs only load it:
 *   <cacheDir>/attribution/<key>/graph.onnx + info.json,
 *   key = sha256(model content hash, layer tensor, the builder's options, quantlens version,
 *                the builder's own source files, the model's file name),
 * Graphs reference the model's weights in its own files (runGraphOptions, weight-references.ts),
 * so an entry holds no weight and sessions load it with the model's folder as external-data folder.
 * so a changed model, tensor, option or builder misses. Both files are written atomically and
 * info.json last; an entry is used only when both exist and info.json parses.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomically } from '../../core/atomic-write.ts';
import type { OnnxModel } from '../../onnx/model-reader.ts';
import { buildAttributionGraphWithInfo, externalDataDirOf, gradName, OBJECTIVE_OUTPUT, overrideName, type AttributionGraphOptions } from '../../onnx/backward/graph.ts';
import type { TensorMeta } from '../../onnx/backward/emitter.ts';
import { modelHashOnce } from '../../sources/model/hash.ts';
import { packageInfo } from '../../core/package-info.ts';
import { externalDataBeside } from '../../sources/model/folder.ts';
import { isFlatSite } from './flat-site.ts';
import { readGraphQuantization } from '../../onnx/quantize/graph-settings.ts';
import { refusedSplit, splitPrefix, type PrefixInfo } from '../../onnx/backward/prefix-split.ts';

/** Bump when what is cached (graph.onnx, info.json) changes meaning. */
const CACHE_FORMAT = 6;
// The builder's sources: in a source tree onnx/backward/*.ts; a packaged build has only .js there,
// and its graphs are then keyed by the package version alone.
const BUILDER_DIR = path.join(packageInfo().root, 'onnx', 'backward');

/** What a session needs from the build besides the bytes (counts, not node lists, so it is JSON). */
export interface GraphInfo {
  tensor: string;
  logits: string;
  pathNodes: number;
  backwardNodes: number;
  tensorMeta: TensorMeta;
  logitsShape: number[];
  /** The graph has GroupQueryAttention, which needs each row's real tokens first: run rows unpadded. */
  unpadded: boolean;
  /** Nodes before the logits run at the last position only (onnx/backward/last-position.ts). */
  tailNodes: number;
  /** The α-independent prefix split off (onnx/backward/prefix-split.ts): the cut; the suffix graph is BuiltGraph.suffix. */
  prefix?: PrefixInfo;
  /** Why the integrand runs use the full graph (no split asked, or the split refused). */
  prefixRefused?: string;
}

/**
 * The cache's options: the builder's, and whether to split off the α-independent prefix: true
 * (default) where it pays (MIN_PREFIX_SHARE), 'always' wherever it can (tests), false never.
 */
export type CachedGraphOptions = AttributionGraphOptions & { prefix?: boolean | 'always' };

/**
 * The split costs a second session's run overhead, the cut tensors' copies and an α = 1 row; it
 * paid where the prefix held ≥ 57 % of the graph's nodes (stories260K layer 2: 1.14×, demo bench
 * model layer 2: 1.49×) and not below 26 % (stories260K layer 0: 0.88×, demo layer 0: 1.03×).
 */
export const MIN_PREFIX_SHARE = 1 / 3;

export interface BuiltGraph {
  bytes: Uint8Array;
  info: GraphInfo;
  /** The suffix graph the integrand runs use (with info.prefix): the cut tensors are its inputs. */
  suffix?: Uint8Array;
  /** 'hit': loaded from the cache; 'miss': built and stored; 'off': built, no cache dir. */
  cache: 'hit' | 'miss' | 'off';
  key?: string;
}

let builderHash: string | undefined;

/** sha256 over the builder's sources (onnx/backward/**), read once per process. */
function builderSourceHash(): string {
  if (builderHash) return builderHash;
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.ts')) h.update(`${path.relative(BUILDER_DIR, p)}\0`).update(readFileSync(p));
    }
  };
  if (existsSync(BUILDER_DIR)) walk(BUILDER_DIR);
  return (builderHash = h.digest('hex'));
}

function quantlensVersion(): string {
  return packageInfo().version;
}

/** The cache key of the attribution graph of `tensor` in the model at `modelPath`. */
export async function attributionGraphKey(modelPath: string, opts: CachedGraphOptions): Promise<string> {
  const model = await modelHashOnce({ onnxPath: modelPath, externalData: externalDataBeside(modelPath) });
  // A referenced graph names the model's file (weight-references.ts): same content under another name misses.
  const settings = { layerTensors: opts.layerTensors, objective: opts.objective ?? 'log-softmax-at-last', logits: opts.logits ?? null, weights: opts.weights ?? 'verbatim', lastPosition: opts.lastPosition ?? true, backwardBranch: opts.backwardBranch ?? true, prefix: opts.prefix ?? true, file: path.basename(modelPath) };
  const keyed = { format: CACHE_FORMAT, model, settings, version: quantlensVersion(), builder: builderSourceHash() };
  return createHash('sha256').update(JSON.stringify(keyed)).digest('hex');
}

/**
 * The builder's options for the run: weights referenced in the model's own files (no copy in the
 * graph, the cache or JS) whenever sessions will resolve them against the model's folder.
 */
export function runGraphOptions(m: OnnxModel, opts: CachedGraphOptions): CachedGraphOptions {
  const ownFolder = m.path && (!opts.externalDataDir || path.resolve(opts.externalDataDir) === path.resolve(path.dirname(m.path)));
  return { ...opts, weights: opts.weights ?? (ownFolder ? 'referenced' : 'verbatim') };
}

async function buildNow(m: OnnxModel, opts: CachedGraphOptions): Promise<{ bytes: Uint8Array; info: GraphInfo; suffix?: Uint8Array }> {
  const { bytes, info } = await buildAttributionGraphWithInfo(m, opts);
  const base: GraphInfo = {
    tensor: info.tensor,
    logits: info.logits,
    pathNodes: info.pathNodes.length,
    backwardNodes: info.backwardNodeCount,
    tensorMeta: info.tensorMeta,
    logitsShape: info.logitsShape,
    unpadded: info.decomposed.some((n) => n.opType === 'GroupQueryAttention'),
    tailNodes: info.tailNodes,
  };
  const split = await prefixSplit(m, bytes, base, opts);
  if ('refused' in split) return { bytes, info: { ...base, prefixRefused: split.refused } };
  return { bytes: split.graph, info: { ...base, prefix: split.info }, suffix: split.bytes };
}

/**
 * The split of the graph at its α-independent prefix, or why not. A second session of the suffix
 * shares the weights' pages only when the graph references them in the model's files; with
 * weights in the graph's bytes it would hold a copy of them, so the split is not made.
 */
async function prefixSplit(m: OnnxModel, bytes: Uint8Array, info: GraphInfo, opts: CachedGraphOptions): ReturnType<typeof splitPrefix> {
  if (opts.prefix === false) return { refused: 'prefix split off (asked)' };
  if (opts.backwardBranch === false) return { refused: 'prefix split needs the backward branch (backwardBranch false)' };
  // Exporter-quantized kernels (MatMulNBits, MatMulInteger, …) may take another path at another
  // batch size (measured on genai-llama-int4: F_input −1.73 vs −1.69 when its layer-0 cut came
  // from the 2-row activation run instead of the α rows' own run, completeness 1.7 % vs 0.1 %),
  // so their prefix is not computed once for all α rows.
  if (readGraphQuantization(m).formats.length > 0) return { refused: 'prefix split: the model has exporter-quantized kernels, whose results may depend on the batch size of the run' };
  if (opts.weights !== 'referenced') return { refused: `prefix split needs weights referenced in the model's files (graph weights '${opts.weights ?? 'verbatim'}': a second session would copy them)` };
  const shape = info.tensorMeta.shape;
  const flat = isFlatSite(info.tensorMeta);
  if (shape.length !== 3 && !flat) return { refused: `prefix split: site of rank ${shape.length}` };
  const W = shape[shape.length - 1];
  const site = { override: overrideName(info.tensor), type: info.tensorMeta.type, shape: (r: number, s: number) => (flat ? [r * s, W] : [r, s, W]), outputs: [OBJECTIVE_OUTPUT, gradName(info.tensor)] };
  const split = await splitPrefix(bytes, site, { externalDataDir: externalDataDirOf(m, opts), feeds: opts.feeds }).catch(refusedSplit);
  if ('refused' in split || opts.prefix === 'always') return split;
  const share = split.info.prefixNodes / (split.info.prefixNodes + split.info.suffixNodes);
  if (share < MIN_PREFIX_SHARE) return { refused: `prefix split: the prefix is ${(100 * share).toFixed(0)} % of the graph's nodes (${split.info.prefixNodes} of ${split.info.prefixNodes + split.info.suffixNodes}), below the ${(100 * MIN_PREFIX_SHARE).toFixed(0)} % where it pays` };
  return split;
}

function readEntry(dir: string): { bytes: Uint8Array; info: GraphInfo; suffix?: Uint8Array } | null {
  const graph = path.join(dir, 'graph.onnx');
  const meta = path.join(dir, 'info.json');
  const suffix = path.join(dir, 'suffix.onnx');
  if (!existsSync(graph) || !existsSync(meta)) return null;
  try {
    const info = JSON.parse(readFileSync(meta, 'utf8')) as GraphInfo;
    if (info.prefix && !existsSync(suffix)) return null;
    return { info, bytes: new Uint8Array(readFileSync(graph)), ...(info.prefix ? { suffix: new Uint8Array(readFileSync(suffix)) } : {}) };
  } catch {
    return null; // unreadable entry: rebuild and overwrite
  }
}

/** The attribution graph of `m` (read from m.path) for opts.layerTensors[0], from the cache when there. */
export async function cachedAttributionGraph(m: OnnxModel, given: CachedGraphOptions, cacheDir?: string): Promise<BuiltGraph> {
  const opts = runGraphOptions(m, given);
  if (!cacheDir || !m.path) return { ...(await buildNow(m, opts)), cache: 'off' };
  const key = await attributionGraphKey(m.path, opts);
  const dir = path.join(cacheDir, 'attribution', key);
  const hit = readEntry(dir);
  if (hit) return { ...hit, cache: 'hit', key };
  const built = await buildNow(m, opts);
  await writeFileAtomically(path.join(dir, 'graph.onnx'), built.bytes);
  if (built.suffix) await writeFileAtomically(path.join(dir, 'suffix.onnx'), built.suffix);
  await writeFileAtomically(path.join(dir, 'info.json'), JSON.stringify(built.info) + '\n');
  return { ...built, cache: 'miss', key };
}
