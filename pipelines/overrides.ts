/**
 * Command-line overrides of pipeline keys (`--set key.path=value`, `--precisions`, `--limit`, …).
 * They are spliced into the parsed YAML document as nodes before validation, so they go through
 * exactly the checks (and defaults) a key written in the file gets, new schema keys included.
 * Every spliced node is remembered with the flag it came from, so that an error names the flag
 * instead of a line of the file.
 */
import { isMap, isScalar, isSeq, Pair, parseDocument, Scalar, visit, YAMLMap, YAMLSeq, type Document, type Node as YamlNode } from 'yaml';
import { QuantlensError } from '../core/errors.ts';
import { SCHEMA } from './schema.ts';

export interface Override {
  /** How the user wrote it, e.g. `--set batch.max_examples=8` or `--precisions`. */
  flag: string;
  /** Key path, e.g. ['batch', 'max_examples']. */
  keys: string[];
  /** The value as typed on the command line. */
  text: string;
}

type Field = (typeof SCHEMA)[string];

const origin = new WeakMap<object, string>();

/** The flag a node was spliced in from, or undefined for nodes of the file itself. */
export function overrideFlag(node: unknown): string | undefined {
  return node && typeof node === 'object' ? origin.get(node) : undefined;
}

/** `key.path=value` → Override; a malformed flag is a usage error naming it. */
export function parseSetFlag(arg: string): Override {
  const eq = arg.indexOf('=');
  const keyPath = eq < 0 ? '' : arg.slice(0, eq).trim();
  if (eq < 0 || !/^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$/.test(keyPath))
    throw new QuantlensError('USAGE', `needs key.path=value (e.g. --set batch.max_examples=8), got "${arg}"`, '--set');
  return { flag: `--set ${arg}`, keys: keyPath.split('.'), text: arg.slice(eq + 1) };
}

/** The schema field at a key path, or undefined when the path names no known key. */
function fieldAt(keys: string[]): Field | undefined {
  let fields: Record<string, Field> | undefined = SCHEMA;
  let f: Field | undefined;
  for (const k of keys) {
    f = fields && Object.hasOwn(fields, k) ? fields[k] : undefined;
    if (!f) return undefined;
    fields = f.kind === 'object' ? f.fields : undefined;
  }
  return f;
}

function yamlValue(text: string): YamlNode {
  const doc = parseDocument(text);
  return doc.errors.length || doc.contents === null ? new Scalar(text) : (doc.contents as YamlNode);
}

/**
 * The value node, typed by the schema: strings stay verbatim (`Answer:` is not a mapping),
 * numbers/booleans/mappings are read as YAML, lists take `a,b,c` or YAML `[a, b]`.
 */
function valueNode(o: Override): YamlNode {
  const f = fieldAt(o.keys);
  if (f?.kind === 'string') return new Scalar(o.text);
  if ((f?.kind === 'stringList' || f?.kind === 'precisionList' || f?.kind === 'layers') && !o.text.trim().startsWith('[')) {
    const seq = new YAMLSeq();
    // Items stay verbatim (a label like " True" keeps its space); layer items are read as YAML (2 → int).
    for (const item of o.text.split(',')) seq.items.push(f.kind === 'layers' ? yamlValue(item.trim()) : new Scalar(item));
    return seq;
  }
  return yamlValue(o.text);
}

function tag(node: YamlNode | Pair | null | undefined, flag: string): void {
  if (!node) return;
  origin.set(node, flag);
  visit(node as YamlNode, (_k, n) => {
    if (n && typeof n === 'object') origin.set(n, flag);
  });
}

function findPair(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p) => isScalar(p.key) && String(p.key.value) === key) as Pair | undefined;
}

/** Splice each override into the document (later flags win), creating mappings on the way. */
export function applyOverrides(doc: Document, overrides: Override[], file: string): void {
  for (const o of overrides) {
    let map = doc.contents as YAMLMap;
    o.keys.forEach((k, i) => {
      let pair = findPair(map, k);
      if (!pair) {
        pair = new Pair(new Scalar(k), null);
        tag(pair.key as YamlNode, o.flag);
        map.items.push(pair);
      }
      if (i === o.keys.length - 1) {
        pair.value = valueNode(o);
        tag(pair.value as YamlNode, o.flag);
        return;
      }
      const v = pair.value as YamlNode | null;
      if (v === null || (isScalar(v) && v.value === null)) pair.value = new YAMLMap();
      else if (!isMap(v))
        throw new QuantlensError('USAGE', `${o.keys.slice(0, i + 1).join('.')} is ${isSeq(v) ? 'a list' : 'a value'} in ${file}, not a mapping`, o.flag);
      map = pair.value as YAMLMap;
    });
  }
}
