import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { type RecordBatch, RecordBatchFileReader, RecordBatchStreamReader, tableFromIPC } from 'apache-arrow';
import { activationSchema, chunkToRecordBatch } from '../../operators/chunk.ts';
import type { ActivationChunk } from '../../core/types.ts';
import { openArrowIpcSink } from '../../sinks/arrow-ipc.ts';
import { QuantlensError } from '../../core/errors.ts';
import { tempDir } from '../helpers/temp.ts';
import { mulberry32 as rng } from '../../core/random.ts';

const dir = tempDir('quantlens-ipc-test-');
test.after(() => rmSync(dir, { recursive: true, force: true }));


/** A chunk of random rows: a few examples, each with consecutive positions. */
function randomChunk(r: () => number, width: number, firstExample: number, layer = 1, precision = 'fp32'): ActivationChunk {
  const ex: number[] = [], pos: number[] = [];
  for (let e = 0; e < 1 + Math.floor(r() * 4); e++) {
    const len = 1 + Math.floor(r() * 6);
    for (let p = 0; p < len; p++) {
      ex.push(firstExample + e);
      pos.push(p);
    }
  }
  const rows = ex.length;
  // values as a view into a bigger buffer at an offset, like a compacted ORT output.
  const backing = new Float32Array(rows * width + 10);
  for (let i = 0; i < backing.length; i++) backing[i] = r() * 2 - 1;
  return {
    batchIndex: 0, precision, layer, tensor: `mlp.${layer}`, width, rows,
    values: backing.subarray(0, rows * width),
    exampleId: Int32Array.from(ex), position: Int32Array.from(pos), tokenId: Int32Array.from(ex, () => Math.floor(r() * 32000)),
  };
}

test('batches written to an IPC stream read back with tableFromIPC equal to the chunks', async () => {
  const r = rng(5);
  const W = 17;
  const chunks = [0, 10, 20, 30].map((e, i) => randomChunk(r, W, e, i, i % 2 ? 'nf4' : 'fp32'));
  // Snapshot before writing: after write() resolves the chunk memory may be reused.
  const want = chunks.flatMap((c) => Array.from({ length: c.rows }, (_, i) => ({
    example_id: c.exampleId[i], position: c.position[i], token_id: c.tokenId[i], layer: c.layer, precision: c.precision,
    values: Array.from(c.values.subarray(i * W, (i + 1) * W)),
  })));
  const file = path.join(dir, 'acts.arrows');
  const sink = await openArrowIpcSink(file);
  for (const c of chunks) {
    await sink.write(chunkToRecordBatch(c));
    c.values.fill(99); // the ORT buffer gets reused: must not affect what was written
  }
  assert.not.ok(existsSync(file));
  await sink.close();
  assert.is(sink.rows, want.length);

  const table = tableFromIPC(readFileSync(file));
  assert.is(table.numRows, want.length);
  assert.is(table.batches.length, chunks.length);
  assert.equal(table.schema.fields.map(String), activationSchema(W).fields.map(String));
  for (let i = 0; i < want.length; i++) {
    const row = table.get(i)!;
    assert.equal(
      { example_id: row.example_id, position: row.position, token_id: row.token_id, layer: row.layer, precision: row.precision, values: Array.from(row.values as Iterable<number>) },
      want[i],
      `row ${i}`,
    );
  }
});

test('a batch with another schema is refused; an empty stream still carries its schema', async () => {
  const r = rng(6);
  const file = path.join(dir, 'mixed.arrows');
  const sink = await openArrowIpcSink(file);
  await sink.write(chunkToRecordBatch(randomChunk(r, 4, 0)));
  try {
    await sink.write(chunkToRecordBatch(randomChunk(r, 5, 0)));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.match((e as Error).message, /differs from the stream/);
  }
  await sink.abort();

  const empty = path.join(dir, 'empty.arrows');
  const e = await openArrowIpcSink(empty);
  await e.close(activationSchema(8));
  const t = tableFromIPC(readFileSync(empty));
  assert.is(t.numRows, 0);
  assert.equal(t.schema.fields.map(String), activationSchema(8).fields.map(String));
});

test('.arrow is the IPC file format: magic at both ends, footer read by RecordBatchFileReader, batches equal the chunks', async () => {
  const r = rng(7);
  const W = 5;
  const chunks = [0, 10, 20].map((e, i) => randomChunk(r, W, e, i + 2, 'q4'));
  const want = chunks.flatMap((c) => Array.from({ length: c.rows }, (_, i) => [c.exampleId[i], c.position[i], c.tokenId[i], c.layer, ...c.values.subarray(i * W, (i + 1) * W)]));
  const file = path.join(dir, 'acts.arrow');
  const sink = await openArrowIpcSink(file);
  for (const c of chunks) await sink.write(chunkToRecordBatch(c));
  await sink.close();
  const bytes = readFileSync(file);
  const magic = Buffer.from('ARROW1');
  assert.ok(bytes.subarray(0, 6).equals(magic) && bytes.subarray(bytes.length - 6).equals(magic), 'ARROW1 at start and end');
  const reader = RecordBatchFileReader.from(bytes);
  reader.open();
  assert.is(reader.numRecordBatches, chunks.length);
  assert.equal(reader.schema.fields.map(String), activationSchema(W).fields.map(String));
  const got: number[][] = [];
  for (let b = 0; b < reader.numRecordBatches; b++) {
    const batch = reader.readRecordBatch(b) as RecordBatch;
    for (let i = 0; i < batch.numRows; i++) {
      const row = batch.get(i)!;
      got.push([row.example_id, row.position, row.token_id, row.layer, ...(row.values as Iterable<number>)]);
    }
  }
  assert.equal(got, want.map((x) => x.map(Number)));
  // The embedded stream (after the 8-byte magic + padding) starts with the schema message.
  const embedded = RecordBatchStreamReader.from(bytes.subarray(8));
  embedded.open();
  assert.equal(embedded.schema.fields.map(String), activationSchema(W).fields.map(String));
  // An empty file still carries its schema.
  const empty = path.join(dir, 'empty.arrow');
  const e = await openArrowIpcSink(empty);
  await e.close(activationSchema(3));
  const er = RecordBatchFileReader.from(readFileSync(empty));
  er.open();
  assert.is(er.numRecordBatches, 0);
  assert.equal(er.schema.fields.map(String), activationSchema(3).fields.map(String));
});

test('abort leaves nothing behind', async () => {
  const sub = mkdtempSync(path.join(dir, 'abort-'));
  const sink = await openArrowIpcSink(path.join(sub, 'x.arrows'));
  await sink.write(chunkToRecordBatch(randomChunk(rng(1), 3, 0)));
  assert.is(readdirSync(sub).length, 1);
  await sink.abort();
  assert.equal(readdirSync(sub), []);
});

test.run();
