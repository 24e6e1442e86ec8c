/**
 * A suite file lists pipeline files that are run one after another and then compared in one
 * cross-task report (the paper's four tasks, for example):
 *
 *   name: paper                       # default: the file name
 *   suite: [paper/boolq.yaml, paper/piqa.yaml, …]   # relative to this file
 *   output: ../../runs/paper          # the cross-task report and suite.json; default runs/<name>
 *
 * A file is a suite file when its top-level mapping has a `suite:` key. Errors name the file and line.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isScalar, isSeq, type Node as YamlNode, type Pair } from 'yaml';
import { QuantlensError } from '../core/errors.ts';

export interface SuiteSpec {
  name: string;
  file: string;
  /** Absolute pipeline file paths, in order. */
  pipelines: string[];
  /** Absolute folder of the cross-task report. */
  output: string;
}

const KEYS = ['name', 'suite', 'output'];

function parse(file: string) {
  if (!existsSync(file)) throw new QuantlensError('CONFIG', 'pipeline file not found', file);
  const lines = new LineCounter();
  const doc = parseDocument(readFileSync(file, 'utf8'), { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (node: YamlNode | null | undefined) => {
    const offset = node?.range?.[0];
    return offset !== undefined ? `${file}:${lines.linePos(offset).line}` : file;
  };
  return { doc, at };
}

/** Whether `file` is a suite file (a mapping with a top-level `suite:` key). Invalid YAML is left to the pipeline loader. */
export function isSuiteFile(file: string): boolean {
  if (!existsSync(file)) return false;
  const { doc } = parse(file);
  return !doc.errors.length && isMap(doc.contents) && doc.contents.has('suite');
}

export function loadSuite(file: string): SuiteSpec {
  const { doc, at } = parse(file);
  if (doc.errors.length || !isMap(doc.contents)) throw new QuantlensError('CONFIG', 'a suite file must be a YAML mapping with a suite: list', file);
  const root = doc.contents;
  const base = path.dirname(path.resolve(file));
  for (const pair of root.items as Pair[]) {
    const k = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!KEYS.includes(k)) throw new QuantlensError('CONFIG', `${k}: unknown key in a suite file (use ${KEYS.join(', ')})`, at(pair.key as YamlNode));
  }
  const str = (key: string): string | undefined => {
    const node = root.get(key, true) as YamlNode | undefined;
    if (node === undefined) return undefined;
    if (!isScalar(node) || typeof node.value !== 'string' || node.value === '') throw new QuantlensError('CONFIG', `${key}: must be a string`, at(node));
    return node.value;
  };
  const list = root.get('suite', true) as YamlNode;
  if (!isSeq(list) || list.items.length === 0) throw new QuantlensError('CONFIG', 'suite: must be a non-empty list of pipeline files', at(list));
  const pipelines = (list.items as YamlNode[]).map((it, i) => {
    if (!isScalar(it) || typeof it.value !== 'string') throw new QuantlensError('CONFIG', `suite[${i}]: must be a pipeline file path`, at(it));
    const p = path.resolve(base, it.value);
    if (!existsSync(p)) throw new QuantlensError('CONFIG', `suite[${i}]: file not found: ${p}`, at(it));
    return p;
  });
  if (new Set(pipelines).size !== pipelines.length) throw new QuantlensError('CONFIG', 'suite: lists a file twice', at(list));
  const name = str('name') ?? path.basename(file).replace(/(\.suite)?\.ya?ml$/i, '');
  const output = path.resolve(base, str('output') ?? path.join('runs', name));
  return { name, file: path.resolve(file), pipelines, output };
}
