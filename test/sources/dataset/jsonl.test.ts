import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readCsvRecords } from '../../../sources/dataset/csv.ts';
import { readJsonlColumns, readJsonlRecords } from '../../../sources/dataset/jsonl.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { mulberry32 } from '../../../core/random.ts';
import { tempDir } from '../../helpers/temp.ts';

const dir = tempDir('ql-jsonl-');
let fileNo = 0;
function writeTemp(content: string | Uint8Array, ext = 'jsonl'): string {
  const p = path.join(dir, `f${fileNo++}.${ext}`);
  writeFileSync(p, content);
  return p;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function expectError(p: Promise<unknown>, messageStart: string, code = 'DATASET') {
  try {
    await p;
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.is((e as QuantlensError).code, code);
    assert.ok((e as Error).message.startsWith(messageStart), `"${(e as Error).message}" should start with "${messageStart}"`);
    return;
  }
  assert.unreachable(`expected error: ${messageStart}`);
}

const rng = mulberry32; // deterministic, so a failure reproduces

const PIECES = ['a', 'Z', ' ', 'é', '€', '中', '😀', ',', '"', '\n', '\r\n', '\\', '{', '}', '\u2028'];

test('JSONL and CSV holding the same table give the same records', async () => {
  const rand = rng(5);
  const pick = <T,>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  for (let k = 0; k < 25; k++) {
    const columns = ['prompt', 'gold', 'note'].slice(0, 1 + Math.floor(rand() * 3));
    const rows = Array.from({ length: Math.floor(rand() * 30) }, () =>
      columns.map(() => Array.from({ length: 1 + Math.floor(rand() * 6) }, () => pick(PIECES)).join('')),
    );
    const csv = [columns, ...rows].map((r) => r.map((v) => `"${v.replace(/"/g, '""')}"`).join(',')).join('\r\n') + '\n';
    let jsonl = '';
    for (const r of rows) {
      jsonl += JSON.stringify(Object.fromEntries(columns.map((c, j) => [c, r[j]]))) + pick(['\n', '\r\n']);
      if (rand() < 0.1) jsonl += pick(['\n', '  \n', '\r\n']); // blank lines are skipped
    }
    const csvPath = writeTemp(csv, 'csv');
    const jsonlPath = writeTemp(jsonl);
    const fromCsv = await collect(readCsvRecords(csvPath));
    assert.is(fromCsv.length, rows.length);
    for (const chunkSize of [1, 3, 7, 65536]) {
      assert.equal(await collect(readJsonlRecords(jsonlPath, { chunkSize })), fromCsv, `case ${k} chunk ${chunkSize}`);
    }
    if (rows.length > 0) assert.equal(await readJsonlColumns(jsonlPath, { chunkSize: 2 }), columns);
  }
});

test('non-string values become text; a last line without newline is read', async () => {
  const p = writeTemp('{"a":1,"b":true,"c":null,"d":[1,"x"],"e":{"k":2},"f":-0.5,"g":"s"}\n\n{"a":2}');
  const records = await collect(readJsonlRecords(p));
  assert.equal(records, [
    { example_id: 0, fields: { a: String(1), b: String(true), c: '', d: JSON.stringify([1, 'x']), e: JSON.stringify({ k: 2 }), f: String(-0.5), g: 's' } },
    { example_id: 1, fields: { a: '2' } },
  ]);
});

test('errors name the physical line (blank lines counted)', async () => {
  const p1 = writeTemp('{"a":1}\n\n\n{"a":2,}\n');
  await expectError(collect(readJsonlRecords(p1, { chunkSize: 3 })), `${p1}:4: invalid JSON (`);
  const p2 = writeTemp('{"a":1}\r\n[1,2]\r\n');
  await expectError(collect(readJsonlRecords(p2)), `${p2}:2: expected a JSON object, got an array`);
  const p3 = writeTemp('\n"text"\n');
  await expectError(readJsonlColumns(p3), `${p3}:2: expected a JSON object, got a string`);
  const p4 = writeTemp('\n \n');
  await expectError(readJsonlColumns(p4), `${p4}: no records, so its columns are unknown`);
  assert.equal(await collect(readJsonlRecords(p4)), []);
  const missing = path.join(dir, 'missing.jsonl');
  await expectError(collect(readJsonlRecords(missing)), `dataset file not found: ${missing}`);
});

test('memory stays flat: heap after 200k records within 10 MB of heap after 20k', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, 'run with --expose-gc (npm test does)');
  const p = path.join(dir, 'big.jsonl');
  const total = 200_000;
  writeFileSync(p, '');
  for (let start = 0; start < total; start += 10_000) {
    let batch = '';
    for (let i = start; i < start + 10_000; i++) {
      batch += JSON.stringify({ prompt: `question ${i}: is this line number ${i} of a long file? ${'pad '.repeat(8)}`, gold: i % 3 ? 'True' : 'False', i }) + '\n';
    }
    appendFileSync(p, batch);
  }
  let count = 0;
  let idSum = 0;
  let valueSum = 0;
  let heapAt20k = 0;
  let heapAt200k = 0;
  for await (const record of readJsonlRecords(p)) {
    idSum += record.example_id;
    valueSum += Number(record.fields.i);
    count++;
    if (count === 20_000) {
      gc!();
      heapAt20k = process.memoryUsage().heapUsed;
    }
  }
  gc!();
  heapAt200k = process.memoryUsage().heapUsed;
  rmSync(p);
  assert.is(count, total);
  assert.is(idSum, (total * (total - 1)) / 2);
  assert.is(valueSum, (total * (total - 1)) / 2);
  const growthMb = (heapAt200k - heapAt20k) / 2 ** 20;
  console.log(`heap growth 20k→200k records: ${growthMb.toFixed(2)} MB`);
  assert.ok(growthMb < 10, `heap grew ${growthMb.toFixed(2)} MB`);
});

test.run();
