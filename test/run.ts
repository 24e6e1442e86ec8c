/**
 * Test driver: runs every test/**\/*.test.ts file (uvu suites) in its own Node process, two at a
 * time (CI has 2 cores), so heavy or memory-measuring tests never share a heap. It prints each
 * file's output and closes with one line "N passed, N failed, N skipped".
 *
 *   npm test                 all files
 *   npm test -- estimators   only files whose path contains "estimators"
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';

const root = path.resolve(import.meta.dirname, '..');
const filters = process.argv.slice(2);

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = findTests(path.join(root, 'test')).filter(
  (f) => filters.length === 0 || filters.some((flt) => path.relative(root, f).includes(flt)),
);

interface Outcome { file: string; total: number; passed: number; skipped: number; code: number | null; output: string; ms: number }

function runOne(file: string): Promise<Outcome> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => {
      const num = (label: string) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(output)?.[1] ?? 0);
      // Tests that need ../shared print "SKIP <what>: …" (test/helpers/shared.ts) and return; count
      // each distinct <what> as a skipped test rather than a passed one.
      const skippedByShared = new Set([...output.matchAll(/^SKIP ([^:]+):/gm)].map((m) => m[1])).size;
      resolve({ file, total: num('Total'), passed: num('Passed') - skippedByShared, skipped: num('Skipped') + skippedByShared, code, output, ms: Date.now() - t0 });
    });
  });
}

const concurrency = Math.max(1, Math.min(2, os.availableParallelism()));
const queue = [...files];
const outcomes: Outcome[] = [];
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      const o = await runOne(f);
      outcomes.push(o);
      const rel = path.relative(root, o.file);
      const status = o.code === 0 && o.total > 0 ? 'ok  ' : 'FAIL';
      process.stdout.write(`\n${status} ${rel} (${o.passed}/${o.total}, ${(o.ms / 1000).toFixed(1)}s)\n`);
      process.stdout.write(o.output.replace(/^/gm, '    ').trimEnd() + '\n');
    }
  }),
);

let passed = 0, failed = 0, skipped = 0;
for (const o of outcomes) {
  passed += o.passed;
  skipped += o.skipped;
  // A file that crashed or ran no test counts as one failure so it cannot pass silently.
  failed += o.code !== 0 || o.total === 0 ? Math.max(1, o.total - o.passed - o.skipped) : o.total - o.passed - o.skipped;
}
const failedFiles = outcomes.filter((o) => o.code !== 0 || o.total === 0).map((o) => path.relative(root, o.file));
if (failedFiles.length) process.stdout.write(`\nfailed files: ${failedFiles.join(', ')}\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;
