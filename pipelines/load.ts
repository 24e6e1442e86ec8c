/**
 * Reads a pipeline YAML file into a validated PipelineConfig. Every problem is reported on one
 * line as `<file>:<line>: <key>: <message>`; relative paths resolve from the YAML file's folder.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, isMap, isSeq, isScalar, type Node as YamlNode } from 'yaml';
import { QuantlensError } from '../core/errors.ts';
import { SCHEMA, type PipelineConfig } from './schema.ts';
import { readPipelineYaml, type NodeSource } from './extends.ts';

type Field = (typeof SCHEMA)[string];

function closest(word: string, options: string[]): string | null {
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
      case 'number': {
        if (!isScalar(node) || typeof node.value !== 'number' || (field.kind === 'int' && !Number.isInteger(node.value)))
          this.fail(node, key, `must be ${field.kind === 'int' ? 'an integer' : 'a number'}`);
        const v = node.value as number;
        if (field.min !== undefined && v < field.min) this.fail(node, key, `must be ≥ ${field.min}`);
        if (field.max !== undefined && v > field.max) this.fail(node, key, `must be ≤ ${field.max}`);
        return v;
      }
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

  object(node: YamlNode | undefined, fields: Record<string, Field>, key: string): Record<string, unknown> {
    if (node !== undefined && !isMap(node)) this.fail(node, key, 'must be a mapping');
    const out: Record<string, unknown> = {};
    const given = new Map<string, YamlNode | null>();
    for (const pair of node && isMap(node) ? node.items : []) {
      const k = isScalar(pair.key) ? String(pair.key.value) : '';
      const full = key ? `${key}.${k}` : k;
      if (!(k in fields)) {
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

/** Parse and validate YAML text. `file` is used for messages and to resolve relative paths (and `extends:`). */
export function parsePipeline(text: string, file: string): PipelineConfig {
  const { root, sourceOf } = readPipelineYaml(text, file);
  const own = sourceOf(root)!;
  const v = new Validator(file, own.lines, sourceOf);
  const raw = v.object(root as YamlNode, SCHEMA, '') as any;
  // A relative path is relative to the file it is written in (a shared part may live elsewhere).
  const resolve = (p: string, at: string[]) => {
    if (path.isAbsolute(p)) return p;
    const written = sourceOf(root.getIn(at, true))?.file ?? file;
    return path.resolve(path.dirname(path.resolve(written)), p);
  };
  const name = raw.name ?? path.basename(file).replace(/\.ya?ml$/i, '');
  const cfg: PipelineConfig = {
    ...raw,
    name,
    file: path.resolve(file),
    model: /^demo(:\w+)?$/.test(raw.model) ? raw.model : resolve(raw.model, ['model']),
    dataset: { ...raw.dataset, path: raw.dataset.path === 'demo' ? 'demo' : resolve(raw.dataset.path, ['dataset', 'path']) },
    output: raw.output ? resolve(raw.output, ['output']) : path.resolve(path.dirname(path.resolve(file)), 'runs', name),
  };
  const shard = cfg.dataset.shard;
  if (shard && shard.index >= shard.count) {
    const node = (root.getIn(['dataset', 'shard', 'index'], true) as YamlNode) ?? undefined;
    v.fail(node, 'dataset.shard.index', `must be < shard.count (${shard.count})`);
  }
  if (cfg.scoring.mode !== 'first-token' && !cfg.scoring.choices?.length)
    v.fail(root.getIn(['scoring'], true) as YamlNode, 'scoring.choices', `is required when scoring.mode is ${cfg.scoring.mode}`);
  const dependsOnRef = cfg.measure.includes('agreement');
  if (dependsOnRef && cfg.precisions.length < 2)
    v.fail(root.getIn(['measure'], true) as YamlNode, 'measure', 'agreement needs at least two precisions');
  const ref = cfg.agreement.reference;
  if (ref !== undefined && !cfg.precisions.includes(ref))
    v.fail(root.getIn(['agreement', 'reference'], true) as YamlNode, 'agreement.reference', `"${ref}" is not one of the precisions (${cfg.precisions.join(', ')})`);
  return cfg;
}

export function loadPipeline(file: string): PipelineConfig {
  if (!existsSync(file)) throw new QuantlensError('CONFIG', 'pipeline file not found', file);
  return parsePipeline(readFileSync(file, 'utf8'), file);
}
