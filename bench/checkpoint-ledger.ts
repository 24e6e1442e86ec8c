/**
 * What the checkpoint ledger costs over a long run (pipelines/ledger.ts), without a model: a
 * RunLedger records synthetic batches and checkpoints every `--every` batches, as a run does
 * (the new ledger file, then the ledger's JSON written atomically as checkpoint.json is), then a
 * fresh RunLedger restores the last checkpoint (what --resume reads back: the state folder
 * listed, every ledger file read and its chain recomputed).
 *
 *   node --import tsx bench/checkpoint-ledger.ts [--prompts 10000000] [--batch 64] [--every 50]
 *
 * Reports the checkpoints' total write time and bytes, the ledger JSON of the first and last
 * checkpoint, and the resume's read time; timings are reported, never asserted.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomically } from '../core/atomic-write.ts';
import type { Batch } from '../core/types.ts';
import { RunLedger } from '../pipelines/ledger.ts';
import { findLedgerFiles } from '../pipelines/ledger-chain.ts';
import type { PrecisionTally } from '../pipelines/measures.ts';

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const v = Number(process.argv[at + 1]);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench/checkpoint-ledger: --${name} must be a positive integer, got ${process.argv[at + 1]}`);
    process.exit(2);
  }
  return v;
}

const prompts = option('prompts', 10_000_000);
const batchSize = option('batch', 64);
const every = option('every', 50);

const tally = () => new Map<string, PrecisionTally>([['fp32', { examples: 0, tokens: 0, truncated: 0, inference_seconds: 0, loglik_seconds: 0, attribution_seconds: 0 }]]);

/** A batch with only what RunLedger.record reads: ids and token lengths. */
function batch(from: number, size: number): Batch {
  const examples = Array.from({ length: size }, (_, i) => ({ example_id: from + i, ids: { length: 3 + ((from + i) % 17) } }));
  return { examples, realTokens: 10 * size, paddedTokens: 20 * size } as unknown as Batch;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-ledger-bench-'));
try {
  const ledger = new RunLedger();
  const t = tally();
  let writeSeconds = 0;
  const each: number[] = [];
  let bytesWritten = 0;
  let checkpoints = 0;
  let first = 0;
  let last = 0;
  const jsonFile = path.join(dir, 'checkpoint.json');
  for (let from = 0, b = 0; from < prompts; from += batchSize) {
    const size = Math.min(batchSize, prompts - from);
    ledger.record(batch(from, size));
    t.get('fp32')!.examples += size;
    if (++b % every !== 0 && from + size < prompts) continue;
    const t0 = performance.now();
    const json = JSON.stringify(await ledger.checkpointState(dir, t));
    await writeFileAtomically(jsonFile, json);
    each.push(performance.now() - t0);
    writeSeconds += each[each.length - 1] / 1000;
    checkpoints++;
    const jsonBytes = Buffer.byteLength(json);
    if (checkpoints === 1) first = jsonBytes;
    last = jsonBytes;
    bytesWritten += jsonBytes;
  }
  // Ledger files are written once each, never rewritten.
  for (const f of readdirSync(dir)) if (f.startsWith('ledger-')) bytesWritten += statSync(path.join(dir, f)).size;
  const t1 = performance.now();
  const restored = new RunLedger();
  const ck = JSON.parse(readFileSync(jsonFile, 'utf8'));
  restored.restore(ck, dir, findLedgerFiles(dir, ck.examples, 'checkpoint.json'), tally(), jsonFile);
  const resumeSeconds = (performance.now() - t1) / 1000;
  if (restored.exampleIds().length !== prompts) throw new Error(`restored ${restored.exampleIds().length} examples, expected ${prompts}`);
  console.log(`prompts ${prompts}, batches of ${batchSize}, a checkpoint every ${every} batches: ${checkpoints} checkpoints`);
  console.log(`checkpoints' writes: ${writeSeconds.toFixed(2)} s in all (${((1000 * writeSeconds) / checkpoints).toFixed(2)} ms each), ${(bytesWritten / 1e6).toFixed(1)} MB (ledger files + ledger JSON)`);
  const k = Math.max(1, Math.floor(each.length / 10));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`a checkpoint's write: ${mean(each.slice(0, k)).toFixed(2)} ms on average over the first ${k}, ${mean(each.slice(-k)).toFixed(2)} ms over the last ${k}`);
  console.log(`ledger JSON: ${first} bytes at the first checkpoint, ${last} at the last`);
  console.log(`resume (restore the last checkpoint's ledger): ${resumeSeconds.toFixed(3)} s`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
