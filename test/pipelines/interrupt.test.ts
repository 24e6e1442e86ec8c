/** Ctrl-C: the run stops cleanly, exits 130 with one line, and no result file appears under a final name. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/temp.ts';

const bin = path.resolve(import.meta.dirname, '..', '..', 'pipelines', 'bin.mjs');

test('SIGINT mid-run: exit 130, one line, no final-name outputs, no temporaries', async () => {
  const dir = tempDir('ql-int-');
  const lines: string[] = [];
  for (let i = 0; i < 40_000; i++) lines.push(JSON.stringify({ prompt: `is the number ${i} even or odd, tell me true or false`, gold: i % 2 ? 'False' : 'True' }));
  writeFileSync(path.join(dir, 'big.jsonl'), lines.join('\n') + '\n');
  writeFileSync(path.join(dir, 'p.yaml'), 'model: demo\ndataset: {path: big.jsonl}\nmeasure: [predictions, neurons, correlation]\noutput: out\n');
  const child = spawn(process.execPath, [bin, 'run', path.join(dir, 'p.yaml'), '--quiet'], { env: { ...process.env, CI: 'true' } });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  // Wait until the run is streaming (its first log line names the output folder), then interrupt.
  await new Promise<void>((resolve) => child.stderr.on('data', () => stderr.includes('→') && resolve()));
  await new Promise((r) => setTimeout(r, 1500));
  child.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.is(code, 130, stderr);
  const errors = stderr.split('\n').filter((l) => l.startsWith('quantlens: ') && !l.includes('→'));
  assert.equal(errors, ['quantlens: interrupted; no result files were written']);
  const out = path.join(dir, 'out');
  const files = existsSync(out) ? (readdirSync(out, { recursive: true }) as string[]) : [];
  for (const f of ['predictions.parquet', 'neurons.parquet', 'correlation.parquet', 'summary.json', 'report.html']) assert.not.ok(files.includes(f), `${f} must not exist`);
  assert.equal(files.filter((f) => f.includes('.tmp-')), []);
});

test.run();
