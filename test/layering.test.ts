/**
 * The layering of .dependency-cruiser.cjs holds (core ← onnx ← sources ← operators ← sinks ←
 * pipelines, no cycles). The module count guards against a cruise that parsed nothing (for
 * example a missing TypeScript transpiler), which would report no violations and pass.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const cli = path.join(root, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
const homes = ['index.ts', 'core', 'onnx', 'sources', 'operators', 'sinks', 'pipelines', 'bench', 'test'];

function countTs(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) n += countTs(path.join(dir, e.name));
    else if (e.name.endsWith('.ts')) n++;
  }
  return n;
}

test('no import cycles and no import against the layer order', () => {
  const r = spawnSync(process.execPath, [cli, '--config', '.dependency-cruiser.cjs', '--output-type', 'json', ...homes], { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20 });
  assert.ok(r.stdout.length > 0, r.stderr);
  const out = JSON.parse(r.stdout) as { summary: { error: number; totalCruised: number; violations: { rule: { name: string }; from: string; to: string }[] } };
  const lines = out.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
  assert.is(out.summary.error, 0, lines.join('\n'));
  const expected = 1 + homes.slice(1).reduce((n, h) => n + countTs(path.join(root, h)), 0);
  assert.ok(out.summary.totalCruised >= expected, `cruised ${out.summary.totalCruised} modules, the tree has ${expected} .ts files`);
});

test.run();
