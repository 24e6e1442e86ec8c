/**
 * `extends: <file>` in a pipeline file: the named file (relative to the one that names it) is
 * read first and this file's mapping is deep-merged over it, so several pipelines can share one
 * part (model, precisions, layers, measures) edited in one place. YAML anchors cannot do that:
 * they do not cross files.
 *
 * The merge works on YAML nodes, not on plain values, and remembers which file every node came
 * from, so a validation error in a shared part names that file and its line. Mappings merge key
 * by key (recursively); any other value (scalars, lists) in the extending file replaces the
 * inherited one. A chain of extends is followed; a cycle is refused.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isScalar, visit, Pair, YAMLMap, type Node as YamlNode } from 'yaml';
import { QuantlensError } from '../core/errors.ts';
import { MAX_PIPELINE_BYTES } from './schema.ts';

/** A file a node was read from: its path (for messages and relative paths) and line table. */
export interface NodeSource {
  file: string;
  lines: LineCounter;
}

export interface MergedPipelineYaml {
  root: YAMLMap;
  /** Where each node was read from (nodes built by the merge carry the extending file). */
  sourceOf: (node: unknown) => NodeSource | undefined;
}

const EXTENDS = 'extends';

function where(src: NodeSource, node: YamlNode | null | undefined): string {
  const offset = node?.range?.[0];
  return offset !== undefined ? `${src.file}:${src.lines.linePos(offset).line}` : src.file;
}

/** Parse one YAML file into its root mapping, registering every node's source. */
function parseRoot(text: string, file: string, origins: Map<unknown, NodeSource>): { root: YAMLMap; src: NodeSource } {
  const lines = new LineCounter();
  if (text.length > MAX_PIPELINE_BYTES) throw new QuantlensError('CONFIG', `pipeline file is larger than ${MAX_PIPELINE_BYTES} bytes`, file);
  // Duplicate keys are found by the validator in one pass (yaml's own check is quadratic).
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line ?? (e.pos ? lines.linePos(e.pos[0]).line : undefined);
    throw new QuantlensError('CONFIG', `invalid YAML: ${e.message.split('\n')[0]}`, line ? `${file}:${line}` : file);
  }
  if (!isMap(doc.contents)) throw new QuantlensError('CONFIG', 'the pipeline file must be a YAML mapping (key: value)', file);
  const src: NodeSource = { file, lines };
  visit(doc, (_key, node) => {
    origins.set(node, src);
  });
  origins.set(doc.contents, src);
  return { root: doc.contents as YAMLMap, src };
}

const keyOf = (p: Pair) => (isScalar(p.key) ? String(p.key.value) : '');

/** `over` merged onto `base`: mappings key by key, anything else replaced. */
function mergeMaps(base: YAMLMap, over: YAMLMap, origins: Map<unknown, NodeSource>): YAMLMap {
  const out = new YAMLMap();
  out.range = over.range;
  origins.set(out, origins.get(over)!);
  out.items = [...(base.items as Pair[])];
  for (const pair of over.items as Pair[]) {
    const k = keyOf(pair);
    const i = (out.items as Pair[]).findIndex((p) => keyOf(p) === k);
    if (i < 0) out.items.push(pair);
    else {
      const inherited = (out.items[i] as Pair).value;
      out.items[i] = isMap(inherited) && isMap(pair.value) ? new Pair(pair.key, mergeMaps(inherited, pair.value, origins)) : pair;
    }
  }
  return out;
}

/** Reads `file` (whose text is `text`) and everything it extends, merged; `chain` detects cycles. */
function resolveFile(text: string, file: string, origins: Map<unknown, NodeSource>, chain: string[]): YAMLMap {
  const { root, src } = parseRoot(text, file, origins);
  const idx = (root.items as Pair[]).findIndex((p) => keyOf(p) === EXTENDS);
  if (idx < 0) return root;
  const pair = root.items[idx] as Pair;
  const value = pair.value as YamlNode | null;
  if (!isScalar(value) || typeof value.value !== 'string' || value.value === '')
    throw new QuantlensError('CONFIG', `${EXTENDS}: must be the path of a pipeline file`, where(src, value ?? (pair.key as YamlNode)));
  const parentFile = path.resolve(path.dirname(path.resolve(file)), value.value);
  if (chain.includes(parentFile)) {
    const cycle = [...chain.slice(chain.indexOf(parentFile)), parentFile].map((f) => path.basename(f)).join(' → ');
    throw new QuantlensError('CONFIG', `${EXTENDS}: cycle ${cycle}`, where(src, value));
  }
  if (!existsSync(parentFile)) throw new QuantlensError('CONFIG', `${EXTENDS}: file not found: ${parentFile}`, where(src, value));
  const parent = resolveFile(readFileSync(parentFile, 'utf8'), parentFile, origins, [...chain, parentFile]);
  const own = new YAMLMap();
  own.range = root.range;
  origins.set(own, src);
  own.items = (root.items as Pair[]).filter((_, i) => i !== idx);
  return mergeMaps(parent, own, origins);
}

/** The root mapping of a pipeline file after following its `extends:` chain. */
export function readPipelineYaml(text: string, file: string): MergedPipelineYaml {
  const origins = new Map<unknown, NodeSource>();
  const root = resolveFile(text, file, origins, [path.resolve(file)]);
  return { root, sourceOf: (node) => origins.get(node) };
}
