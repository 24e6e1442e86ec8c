/**
 * Every numeric key has a finite upper limit (its own max, or INT_CAP for ints), so no value in a
 * pipeline file can size work or memory without bound; the validator enforces it (checked here
 * against the schema itself, and at each key's boundary).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { INT_CAP, SCHEMA, type Field } from '../../pipelines/schema.ts';
import { parsePipeline } from '../../pipelines/load.ts';

function numericKeys(fields: Record<string, Field>, prefix = ''): [string, Extract<Field, { kind: 'int' | 'number' }>][] {
  const out: [string, Extract<Field, { kind: 'int' | 'number' }>][] = [];
  for (const [k, f] of Object.entries(fields)) {
    if (f.kind === 'object') out.push(...numericKeys(f.fields, `${prefix}${k}.`));
    else if (f.kind === 'int' || f.kind === 'number') out.push([`${prefix}${k}`, f]);
  }
  return out;
}

/** YAML that sets one dotted key (nested mappings) on top of a minimal pipeline. */
function withKey(key: string, value: string): string {
  const parts = key.split('.');
  const lines = parts.map((p, i) => `${'  '.repeat(i)}${p}:${i === parts.length - 1 ? ` ${value}` : ''}`);
  const base = parts[0] === 'dataset' ? 'model: demo\n' : 'model: demo\ndataset:\n  path: demo\n';
  const ds = parts[0] === 'dataset' ? lines.join('\n').replace('dataset:', 'dataset:\n  path: demo') : lines.join('\n');
  return `${base}${ds}\n`;
}

test('every numeric key has a finite maximum', () => {
  const keys = numericKeys(SCHEMA);
  assert.ok(keys.length >= 20, `${keys.length} numeric keys`);
  for (const [k, f] of keys) {
    const max = f.max ?? (f.kind === 'int' ? INT_CAP : undefined);
    assert.ok(max !== undefined && Number.isFinite(max), `${k} has no maximum`);
  }
});

test('each numeric key refuses max+1, NaN and Infinity at its own line, and names the key', () => {
  for (const [k, f] of numericKeys(SCHEMA)) {
    if (k === 'dataset.shard.index' || k === 'dataset.shard.count') continue; // set together, below
    const max = f.max ?? INT_CAP;
    const line = k.split('.').length + (k.startsWith('dataset.') ? 2 : 3);
    for (const [v, msg] of [[String(f.kind === 'int' ? max + 1 : max * 2 + 1), /must be ≤/], ['.nan', /must be (a finite number|an integer)/], ['.inf', /must be (a finite number|an integer)/]] as const) {
      let err: Error | null = null;
      try {
        parsePipeline(withKey(k, v), '/p.yaml');
      } catch (e) {
        err = e as Error;
      }
      assert.ok(err, `${k}: ${v} accepted`);
      assert.match(err!.message, new RegExp(`^/p\\.yaml:${line}: ${k.replace(/\./g, '\\.')}: `), `${k}: ${err!.message}`);
      assert.match(err!.message, msg, `${k}=${v}: ${err!.message}`);
    }
  }
  assert.throws(() => parsePipeline('model: demo\ndataset:\n  path: demo\n  shard: {index: 2147483648, count: 1}\n', '/p.yaml'), /dataset\.shard\.index: must be ≤ 2147483647/);
});

test.run();
