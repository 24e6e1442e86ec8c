import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readCsvHeader, readCsvRecords, readCsvRows } from '../../../sources/dataset/csv.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { mulberry32 } from '../../../core/random.ts';
import { tempDir } from '../../helpers/temp.ts';

const dir = tempDir('ql-csv-');
let fileNo = 0;
function writeTemp(content: string | Uint8Array, name = `f${fileNo++}.csv`): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** Reference: a plain whole-string parser written independently of the streaming tokenizer. */
function referenceParse(input: string): string[][] {
  const text = input.startsWith('\uFEFF') ? input.slice(1) : input;
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let atFieldStart = true;
  let rowHadQuote = false;
  const finishRow = () => {
    row.push(field);
    if (!(row.length === 1 && row[0] === '' && !rowHadQuote)) rows.push(row);
    row = [];
    field = '';
    rowHadQuote = false;
    atFieldStart = true;
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (atFieldStart && c === '"') {
      rowHadQuote = true;
      atFieldStart = false;
      i++;
      for (;;) {
        if (i >= text.length) throw new Error('reference: unterminated quote');
        if (text[i] === '"' && text[i + 1] === '"') { field += '"'; i += 2; }
        else if (text[i] === '"') { i++; break; }
        else field += text[i++];
      }
    } else if (c === ',') {
      row.push(field);
      field = '';
      atFieldStart = true;
      i++;
    } else if (c === '\n' || c === '\r') {
      finishRow();
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
    } else {
      field += c;
      atFieldStart = false;
      i++;
    }
  }
  if (!atFieldStart || row.length > 0) finishRow();
  return rows;
}

const rng = mulberry32; // deterministic, so a failure reproduces

const PIECES = ['a', 'b', 'Z', ' ', '1', 'é', '€', '中', '😀', ',', '"', '\n', '\r\n', '""', "'", '\t'];

/** `lines[r]`: physical line where row r starts, counted while writing the text. */
interface Generated { text: string; rows: string[][]; lines: number[] }

/** Random nasty CSV plus the exact values it encodes (header included as rows[0]). */
function generateCsv(rand: () => number, rowCount: number, colCount: number): Generated {
  const pick = <T,>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  const rows: string[][] = [];
  for (let r = 0; r <= rowCount; r++) {
    const row: string[] = [];
    for (let c = 0; c < colCount; c++) {
      if (r === 0) { row.push(`col${c}${pick(['', 'é', ' x', ',y'])}`); continue; }
      let v = '';
      const len = Math.floor(rand() * 7);
      for (let k = 0; k < len; k++) v += pick(PIECES);
      row.push(v);
    }
    rows.push(row);
  }
  const encode = (v: string, onlyField: boolean) => {
    const must = /[",\r\n]/.test(v) || (onlyField && v === '');
    return must || rand() < 0.2 ? `"${v.replace(/"/g, '""')}"` : v;
  };
  let text = rand() < 0.3 ? '\uFEFF' : '';
  const lines: number[] = [];
  rows.forEach((row, r) => {
    lines.push((text.match(/\n/g) ?? []).length + 1);
    text += row.map((v) => encode(v, colCount === 1)).join(',');
    const last = r === rows.length - 1;
    if (!last || rand() < 0.6) text += pick(['\n', '\r\n']);
    if (!last && rand() < 0.05) text += pick(['\n', '\r\n']); // blank line: skipped
  });
  return { text, rows, lines };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function expectError(p: Promise<unknown>, message: string, code = 'DATASET') {
  try {
    await p;
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.is((e as QuantlensError).code, code);
    assert.is((e as Error).message, message);
    return;
  }
  assert.unreachable(`expected error: ${message}`);
}

test('reference parser agrees with the generator (guards the reference itself)', () => {
  const rand = rng(1);
  for (let k = 0; k < 50; k++) {
    const g = generateCsv(rand, 1 + Math.floor(rand() * 20), 1 + Math.floor(rand() * 4));
    assert.equal(referenceParse(g.text), g.rows);
  }
});

test('streaming rows equal reference rows on random nasty CSV at many chunk sizes', async () => {
  const rand = rng(42);
  for (let k = 0; k < 60; k++) {
    const g = generateCsv(rand, 1 + Math.floor(rand() * 40), 1 + Math.floor(rand() * 4));
    const p = writeTemp(g.text);
    const expected = referenceParse(g.text);
    assert.equal(expected, g.rows);
    for (const chunkSize of [1, 2, 3, 5, 1 + Math.floor(rand() * 40), 65536]) {
      const rows = await collect(readCsvRows(p, { chunkSize }));
      assert.equal(rows.map((r) => r.fields), expected, `case ${k}, chunkSize ${chunkSize}`);
      const records = await collect(readCsvRecords(p, { chunkSize }));
      assert.equal(records.map((r) => r.example_id), expected.slice(1).map((_, i) => i));
      assert.equal(records.map((r) => expected[0].map((h) => r.fields[h])), expected.slice(1));
    }
  }
});

test('row start lines count physical lines (embedded newlines and blank lines included)', async () => {
  const rand = rng(7);
  for (let k = 0; k < 30; k++) {
    const g = generateCsv(rand, 1 + Math.floor(rand() * 20), 1 + Math.floor(rand() * 3));
    const rows = await collect(readCsvRows(writeTemp(g.text), { chunkSize: 1 + Math.floor(rand() * 5) }));
    assert.equal(rows.map((r) => r.line), g.lines, `case ${k}`);
  }
});

test('an emoji and a euro sign split across the default 64 KiB read boundary decode intact', async () => {
  const header = 'text,n\n';
  const emojiPad = 'x'.repeat(65534 - header.length); // emoji occupies bytes 65534..65537
  const p1 = writeTemp(`${header}${emojiPad}😀,1\n`);
  const r1 = await collect(readCsvRecords(p1));
  assert.equal(r1, [{ example_id: 0, fields: { text: `${emojiPad}😀`, n: '1' } }]);
  assert.is(Buffer.byteLength(header + emojiPad), 65534);

  const euroPad = 'y'.repeat(65535 - header.length); // € occupies bytes 65535..65537
  const p2 = writeTemp(`${header}"${euroPad.slice(1)}€",2\r\n`);
  const r2 = await collect(readCsvRecords(p2));
  assert.equal(r2, [{ example_id: 0, fields: { text: `${euroPad.slice(1)}€`, n: '2' } }]);
});

test('BOM, CRLF, lone CR, trailing comma, quoted empty and blank lines', async () => {
  const p = writeTemp('\uFEFFa,b\r\n1,\r\n\r\n"",x\rlast,"q""uote"');
  const recs = await collect(readCsvRecords(p, { chunkSize: 2 }));
  assert.equal(recs, [
    { example_id: 0, fields: { a: '1', b: '' } },
    { example_id: 1, fields: { a: '', b: 'x' } },
    { example_id: 2, fields: { a: 'last', b: 'q"uote' } },
  ]);
  assert.equal(await readCsvHeader(p), ['a', 'b']);
});

test('header-only file gives no records; a 0-byte file has no columns', async () => {
  assert.equal(await collect(readCsvRecords(writeTemp('prompt,gold\n'))), []);
  assert.equal(await readCsvHeader(writeTemp('prompt,gold')), ['prompt', 'gold']);
  const empty = writeTemp('');
  assert.equal(await collect(readCsvRecords(empty)), []);
  await expectError(readCsvHeader(empty), `${empty}: empty file, a CSV dataset needs a header row`);
});

test('errors name the physical line', async () => {
  const p1 = writeTemp('a,b\n1,2\n"x,y\nz\n');
  await expectError(collect(readCsvRecords(p1, { chunkSize: 4 })), `${p1}:3: unterminated quoted field at end of file`);
  const p2 = writeTemp('a,b\n"1\n2",3\n4,5,6\n');
  await expectError(collect(readCsvRecords(p2)), `${p2}:4: row has 3 fields, header has 2`);
  const p3 = writeTemp('a,b\r\nok,1\r\nx"y,2\r\n');
  await expectError(collect(readCsvRecords(p3)), `${p3}:3: stray quote inside an unquoted field (quote the whole field and write "" for a quote)`);
  const p4 = writeTemp('a,b\n"ab"c,1\n');
  await expectError(collect(readCsvRecords(p4)), `${p4}:2: unexpected text after a closing quote (write "" for a quote inside a quoted field)`);
  const p5 = writeTemp('a,a\n1,2\n');
  await expectError(readCsvHeader(p5), `${p5}:1: duplicate column "a" in the header`);
  const p6 = writeTemp(new Uint8Array([0x61, 0x0a, 0xff, 0xfe, 0x0a]));
  await expectError(collect(readCsvRecords(p6)), `${p6}: not valid UTF-8 (near byte 0)`);
  const missing = path.join(dir, 'nope.csv');
  await expectError(collect(readCsvRecords(missing)), `dataset file not found: ${missing}`);
  await expectError(readCsvHeader(dir), `dataset path is not a file: ${dir}`);
});

test('field-count error line = newlines before the bad row + 1, on random prefixes', async () => {
  const rand = rng(99);
  for (let k = 0; k < 30; k++) {
    const g = generateCsv(rand, 1 + Math.floor(rand() * 30), 2);
    const prefix = g.text.endsWith('\n') ? g.text : g.text + '\r\n';
    const expectedLine = (prefix.match(/\n/g) ?? []).length + 1;
    const p = writeTemp(`${prefix}1,2,3\n`);
    await expectError(collect(readCsvRecords(p, { chunkSize: 1 + Math.floor(rand() * 9) })), `${p}:${expectedLine}: row has 3 fields, header has 2`);
  }
});

const README_COUNTS: Record<string, { records: number; gold: Record<string, number>; columns: string[] }> = {
  boolq: { records: 10000, gold: { True: 6226, False: 3774 }, columns: ['prompt', 'gold', 'split'] },
  piqa: { records: 1838, gold: { A: 910, B: 928 }, columns: ['prompt', 'gold'] },
  hellaswag: { records: 5000, gold: { '0': 1250, '1': 1237, '2': 1301, '3': 1212 }, columns: ['prompt', 'gold'] },
  toxicity: { records: 5000, gold: { True: 2525, False: 2475 }, columns: ['prompt', 'gold'] },
};

for (const [name, expected] of Object.entries(README_COUNTS)) {
  test(`shared ${name}.csv: record and gold counts match its README and the reference parser`, async () => {
    const p = sharedPath(`datasets/${name}.csv`, `${name} CSV counts`);
    if (!p) return;
    const records = await collect(readCsvRecords(p));
    assert.is(records.length, expected.records);
    const gold: Record<string, number> = {};
    for (const r of records) gold[r.fields.gold] = (gold[r.fields.gold] ?? 0) + 1;
    assert.equal(gold, expected.gold);
    assert.equal(await readCsvHeader(p), expected.columns);
    const ref = referenceParse(readFileSync(p, 'utf8'));
    assert.equal(ref[0], expected.columns);
    assert.equal(records.map((r) => ref[0].map((h) => r.fields[h])), ref.slice(1));
    if (name === 'boolq') {
      const split: Record<string, number> = {};
      for (const r of records) split[r.fields.split] = (split[r.fields.split] ?? 0) + 1;
      assert.equal(split, { train: 9427, validation: 573 });
    }
  });
}

test.run();
