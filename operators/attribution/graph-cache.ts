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
import { buildAttributionGraphWithInfo, type AttributionGraphOptions } from '../../onnx/backward/graph.ts';
import type { TensorMeta } from '../../onnx/backward/emitter.ts';
import { modelHashOnce } from '../../sources/model/hash.ts';
import { packageInfo } from '../../core/package-info.ts';
import { externalDataBeside } from '../../sources/model/folder.ts';

/** Bump when what is cached (graph.onnx, info.json) changes meaning. */
const CACHE_FORMAT = 5;
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
}

export interface BuiltGraph {
  bytes: Uint8Array;
  info: GraphInfo;
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
export async function attributionGraphKey(modelPath: string, opts: AttributionGraphOptions): Promise<string> {
  const model = await modelHashOnce({ onnxPath: modelPath, externalData: externalDataBeside(modelPath) });
  // A referenced graph names the model's file (weight-references.ts): same content under another name misses.
  const settings = { layerTensors: opts.layerTensors, objective: opts.objective ?? 'log-softmax-at-last', logits: opts.logits ?? null, weights: opts.weights ?? 'verbatim', lastPosition: opts.lastPosition ?? true, backwardBranch: opts.backwardBranch ?? true, file: path.basename(modelPath) };
  const keyed = { format: CACHE_FORMAT, model, settings, version: quantlensVersion(), builder: builderSourceHash() };
  return createHash('sha256').update(JSON.stringify(keyed)).digest('hex');
}

/**
 * The builder's options for the run: weights referenced in the model's own files (no copy in the
 * graph, the cache or JS) whenever sessions will resolve them against the model's folder.
 */
export function runGraphOptions(m: OnnxModel, opts: AttributionGraphOptions): AttributionGraphOptions {
  const ownFolder = m.path && (!opts.externalDataDir || path.resolve(opts.externalDataDir) === path.resolve(path.dirname(m.path)));
  return { ...opts, weights: opts.weights ?? (ownFolder ? 'referenced' : 'verbatim') };
}

async function buildNow(m: OnnxModel, opts: AttributionGraphOptions): Promise<{ bytes: Uint8Array; info: GraphInfo }> {
  const { bytes, info } = await buildAttributionGraphWithInfo(m, opts);
  return {
    bytes,
    info: {
      tensor: info.tensor,
      logits: info.logits,
      pathNodes: info.pathNodes.length,
      backwardNodes: info.backwardNodeCount,
      tensorMeta: info.tensorMeta,
      logitsShape: info.logitsShape,
      unpadded: info.decomposed.some((n) => n.opType === 'GroupQueryAttention'),
      tailNodes: info.tailNodes,
    },
  };
}

function readEntry(dir: string): { bytes: Uint8Array; info: GraphInfo } | null {
  const graph = path.join(dir, 'graph.onnx');
  const meta = path.join(dir, 'info.json');
  if (!existsSync(graph) || !existsSync(meta)) return null;
  try {
    return { info: JSON.parse(readFileSync(meta, 'utf8')) as GraphInfo, bytes: new Uint8Array(readFileSync(graph)) };
  } catch {
    return null; // unreadable entry: rebuild and overwrite
  }
}

/** The attribution graph of `m` (read from m.path) for opts.layerTensors[0], from the cache when there. */
export async function cachedAttributionGraph(m: OnnxModel, given: AttributionGraphOptions, cacheDir?: string): Promise<BuiltGraph> {
  const opts = runGraphOptions(m, given);
  if (!cacheDir || !m.path) return { ...(await buildNow(m, opts)), cache: 'off' };
  const key = await attributionGraphKey(m.path, opts);
  const dir = path.join(cacheDir, 'attribution', key);
  const hit = readEntry(dir);
  if (hit) return { ...hit, cache: 'hit', key };
  const built = await buildNow(m, opts);
  await writeFileAtomically(path.join(dir, 'graph.onnx'), built.bytes);
  await writeFileAtomically(path.join(dir, 'info.json'), JSON.stringify(built.info) + '\n');
  return { ...built, cache: 'miss', key };
}
