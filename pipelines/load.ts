/**
 * Reads a pipeline YAML file into a validated PipelineConfig. Every problem is reported on one
 * line as `<file>:<line>: <key>: <message>`; relative paths resolve from the YAML file's folder.
 */
import { readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, type Node as YamlNode, type Document } from 'yaml';
import { QuantlensError } from '../core/errors.ts';
import { INT_CAP, MAX_PIPELINE_BYTES, RULES, SCHEMA, type Field, type PipelineConfig } from './schema.ts';
import { applyOverrides, overrideFlag, type Override } from './overrides.ts';
import { readPipelineYaml, type NodeSource } from './extends.ts';

function closest(word: string, options: string[]): string | null {
  if (word.length > 64) return null; // no key is that long; edit distance would cost length × options
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++) d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length][b.length];
  };
  let best: string | null = null;
  let bestD = 3;
  for (const o of options) {
    const dd = dist(word, o);
    if (dd < bestD) (best = o), (bestD = dd);
  }
  return best;
}

class Validator {
  constructor(
    private file: string,
    private lines: LineCounter,
    /** The file a node came from when `extends:` merged several (pipelines/extends.ts). */
    private sourceOf: (node: unknown) => NodeSource | undefined = () => undefined,
  ) {}

  fail(node: YamlNode | null | undefined, key: string, msg: string): never {
    const flag = overrideFlag(node);
    if (flag) throw new QuantlensError('USAGE', `${key}: ${msg}`, flag); // a bad flag value is a usage error (exit 2)
    const src = (node && this.sourceOf(node)) || { file: this.file, lines: this.lines };
    const offset = node?.range?.[0];
    const line = offset !== undefined ? src.lines.linePos(offset).line : undefined;
    throw new QuantlensError('CONFIG', `${key}: ${msg}`, line !== undefined ? `${src.file}:${line}` : src.file);
  }

  value(node: YamlNode | null | undefined, field: Field, key: string): unknown {
    if (node === undefined || node === null || (isScalar(node) && node.value === null)) {
      if ('required' in field && field.required) this.fail(node, key, 'is required');
      if (field.kind === 'object') return field.optional ? undefined : this.object(undefined, field.fields, key);
      return 'default' in field ? structuredClone(field.default) : undefined;
    }
    switch (field.kind) {
      case 'string': {
        if (!isScalar(node) || typeof node.value !== 'string') this.fail(node, key, 'must be a string');
        const v = node.value as string;
        if (field.oneOf && !field.oneOf.includes(v)) this.fail(node, key, `"${v}" is not one of ${field.oneOf.join(', ')}`);
        return v;
      }
      case 'int':
      case 'number':
        return this.number(node, field, key);
      case 'bool':
        if (!isScalar(node) || typeof node.value !== 'boolean') this.fail(node, key, 'must be true or false');
        return node.value;
      case 'stringList': {
        const items = isSeq(node) ? node.items : isScalar(node) ? [node] : this.fail(node, key, 'must be a list of strings');
        const out = (items as YamlNode[]).map((it, i) => {
          if (!isScalar(it) || typeof it.value !== 'string') this.fail(it, `${key}[${i}]`, 'must be a string');
          const v = it.value as string;
          if (field.oneOf && !field.oneOf.includes(v)) this.fail(it, `${key}[${i}]`, `"${v}" is not one of ${field.oneOf.join(', ')}`);
          return v;
        });
        if (field.nonEmpty && out.length === 0) this.fail(node, key, 'must not be empty');
        if (new Set(out).size !== out.length) this.fail(node, key, 'has a duplicate entry');
        return out;
      }
      case 'precisionList':
        return this.precisionList(node, field.oneOf, key);
      case 'layers': {
        if (!isSeq(node)) this.fail(node, key, 'must be a list of first/middle/last, layer indices or tensor names');
        if (node.items.length === 0) this.fail(node, key, 'must not be empty');
        return node.items.map((it, i) => {
          if (!isScalar(it) || (typeof it.value !== 'string' && !Number.isInteger(it.value)))
            this.fail(it as YamlNode, `${key}[${i}]`, 'must be first, middle, last, an integer or a tensor name');
          return it.value;
        });
      }
      case 'object':
        return this.object(node, field.fields, key);
    }
  }

  /** `[fp32, nf4, model_q4, {name: int4, model: ../other}]` → names, with `{name, model}` kept as objects. */
  precisionList(node: YamlNode, oneOf: readonly string[], key: string): (string | { name: string; model: string })[] {
    const items = isSeq(node) ? node.items : isScalar(node) ? [node] : this.fail(node, key, 'must be a list of precision names or {name, model} mappings');
    const out = (items as YamlNode[]).map((it, i) => {
      const k = `${key}[${i}]`;
      if (isMap(it)) {
        for (const req of ['name', 'model']) if (!it.has(req)) this.fail(it, `${k}.${req}`, 'is required');
        const o = this.object(it, { name: { kind: 'string', required: true }, model: { kind: 'string', required: true } }, k) as { name: string; model: string };
        if (!/^[\w.+-]+$/.test(o.name)) this.fail(it, `${k}.name`, `"${o.name}" must be letters, digits, _ . + or -`);
        return o;
      }
      if (!isScalar(it) || typeof it.value !== 'string') this.fail(it, k, 'must be a precision name or a {name, model} mapping');
      const v = it.value as string;
      if (!oneOf.includes(v) && !/^model_[A-Za-z0-9]+$/.test(v)) this.fail(it, k, `"${v}" is not one of ${oneOf.join(', ')}, model_<tag> (a prebuilt file) or {name, model}`);
      return v;
    });
    const names = out.map((p) => (typeof p === 'string' ? p : p.name));
    if (names.length === 0) this.fail(node, key, 'must not be empty');
    if (new Set(names).size !== names.length) this.fail(node, key, 'has a duplicate entry');
    return out;
  }

  /** NaN and ±Infinity are refused for every numeric key; ints are safe integers under a cap. */
  number(node: YamlNode, field: Extract<Field, { kind: 'int' | 'number' }>, key: string): number {
    const isInt = field.kind === 'int';
    if (!isScalar(node) || typeof node.value !== 'number' || (isInt && !Number.isInteger(node.value)))
      this.fail(node, key, `must be ${isInt ? 'an integer' : 'a number'}`);
    const v = node.value as number;
    if (!Number.isFinite(v)) this.fail(node, key, `must be a finite number, got ${v}`);
    const max = field.max ?? (isInt ? INT_CAP : undefined);
    if (field.min !== undefined && v < field.min) this.fail(node, key, `must be ≥ ${field.min}`);
    if (max !== undefined && v > max) this.fail(node, key, `must be ≤ ${max}`);
    return v;
  }

  object(node: YamlNode | undefined, fields: Record<string, Field>, key: string): Record<string, unknown> {
    if (node !== undefined && !isMap(node)) this.fail(node, key, 'must be a mapping');
    const out: Record<string, unknown> = {};
    // A Map, not `key in object`: prototype names (constructor, __proto__, …) are unknown keys like any other.
    const given = new Map<string, YamlNode | null>();
    for (const pair of node && isMap(node) ? node.items : []) {
      const k = isScalar(pair.key) ? String(pair.key.value) : '';
      const shown = k.length > 80 ? `${k.slice(0, 77)}...` : k;
      const full = key ? `${key}.${shown}` : shown;
      // Duplicates are found here in one pass (the YAML library's own check is quadratic).
      if (given.has(k)) this.fail(pair.key as YamlNode, full, 'duplicate key');
      if (!Object.hasOwn(fields, k)) {
        const hint = closest(k, Object.keys(fields));
        this.fail(pair.key as YamlNode, full, `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}`);
      }
      given.set(k, pair.value as YamlNode | null);
    }
    for (const [k, f] of Object.entries(fields)) {
      const full = key ? `${key}.${k}` : k;
      const v = this.value(given.get(k) ?? undefined, f, full);
      if (v !== undefined) out[k] = v;
    }
    return out;
  }
}

/**
 * Parse and validate YAML text. `file` is used for messages and to resolve relative paths.
 * `overrides` (command-line flags) replace keys before validation; their paths resolve from the
 * current directory.
 */
export function parsePipeline(text: string, file: string, overrides: Override[] = []): PipelineConfig {
  if (text.length > MAX_PIPELINE_BYTES) throw new QuantlensError('CONFIG', `pipeline file is larger than ${MAX_PIPELINE_BYTES} bytes`, file);
  // The file and everything it `extends:`, merged; every node remembers the file it was read from.
  const { root, sourceOf } = readPipelineYaml(text, file);
  applyOverrides({ contents: root } as unknown as Document, overrides, file);
  const v = new Validator(file, sourceOf(root)!.lines, sourceOf);
  const raw = v.object(root as YamlNode, SCHEMA, '') as any;
  // A relative path is relative to the file it is written in (a shared part may live elsewhere),
  // or to the current folder when a command-line flag gave it.
  const resolveAt = (keys: string[]) => (p: string) => {
    if (path.isAbsolute(p)) return p;
    const node = root.getIn(keys, true);
    if (overrideFlag(node)) return path.resolve(process.cwd(), p);
    return path.resolve(path.dirname(path.resolve(sourceOf(node)?.file ?? file)), p);
  };
  const resolve = resolveAt(['model']);
  const name = raw.name ?? path.basename(file).replace(/\.ya?ml$/i, '');
  const precisionEntries = raw.precisions as (string | { name: string; model: string })[];
  const precisionModels = Object.fromEntries(precisionEntries.flatMap((p) => (typeof p === 'string' ? [] : [[p.name, resolveAt(['precisions'])(p.model)]])));
  const cfg: PipelineConfig = {
    ...raw,
    precisions: precisionEntries.map((p) => (typeof p === 'string' ? p : p.name)),
    ...(Object.keys(precisionModels).length ? { precision_models: precisionModels } : {}),
    name,
    file: path.resolve(file),
    model: /^demo(:\w+)?$/.test(raw.model) ? raw.model : resolve(raw.model),
    dataset: { ...raw.dataset, path: raw.dataset.path === 'demo' ? 'demo' : resolveAt(['dataset', 'path'])(raw.dataset.path) },
    output: raw.output ? resolveAt(['output'])(raw.output) : path.resolve(path.dirname(path.resolve(file)), 'runs', name),
  };
  for (const rule of RULES) {
    const msg = rule.check(cfg);
    if (msg !== null) v.fail(nodeAt(root, rule.at), rule.at, msg);
  }
  return cfg;
}

/** The YAML node of a dotted key, or of its nearest given parent (a key left at its default). */
function nodeAt(doc: Pick<Document, 'getIn'>, key: string): YamlNode | undefined {
  const parts = key.split('.');
  for (let n = parts.length; n > 0; n--) {
    const node = doc.getIn(parts.slice(0, n), true) as YamlNode | undefined;
    if (node && typeof node === 'object') return node;
  }
  return undefined;
}

export function loadPipeline(file: string, overrides: Override[] = []): PipelineConfig {
  if (!existsSync(file)) throw new QuantlensError('CONFIG', 'pipeline file not found', file);
  const st = statSync(file);
  if (!st.isFile()) throw new QuantlensError('CONFIG', 'pipeline path is not a file', file);
  if (st.size > MAX_PIPELINE_BYTES) throw new QuantlensError('CONFIG', `pipeline file is ${st.size} bytes, more than the ${MAX_PIPELINE_BYTES} allowed`, file);
  return parsePipeline(readFileSync(file, 'utf8'), file, overrides);
}
