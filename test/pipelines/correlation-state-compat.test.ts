/**
 * Shard states written before binary correlation files (issue 11) still load: a shard state.json
 * rewritten the old way (inline base64 co-moments, no .f64 files) merges to the same tables as the
 * binary ones. (Checkpoints of those formats, 2 and 3, are refused since format 4 moved the
 * ledger's examples into files: test/faults/state.test.ts.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runPipeline } from '../../pipelines/run.ts';
import { mergeShards } from '../../pipelines/merge.ts';
import type { CoMomentFileEntry, CoMomentState } from '../../operators/estimators/correlation.ts';
import { CoMomentReader } from '../../operators/estimators/correlation-state-file.ts';
import { encodeF64 } from '../../operators/estimators/state-codec.ts';
import { tableDifferences, TABLE_KEYS } from '../helpers/run-tables.ts';
import { yamlPipeline } from '../helpers/pipeline.ts';
import { tempDir } from '../helpers/temp.ts';

const root = tempDir('ql-corr-compat-');
const quiet = { quiet: true, report: false, log: () => undefined } as const;
const TABLES = ['correlation', 'neurons', 'dead', 'predictions'];

function pipeline(name: string, extra: string[] = []) {
  return yamlPipeline(root, name, ['model: demo', 'dataset: {path: demo, limit: 20}', 'batch: {max_examples: 4}', 'measure: [predictions, neurons, dead, correlation]', `output: ${path.join(root, name)}`, ...extra]);
}

/** The JSON's correlation entries made inline base64 again, as quantlens wrote them before binary files. */
function toInline(json: { states: { correlation: { entries: CoMomentFileEntry[] } } }, dir: string): void {
  json.states.correlation.entries = json.states.correlation.entries.map((e) => {
    const r = new CoMomentReader(path.join(dir, e.file));
    const v = r.vectors(e.offset, e.width);
    const upper = new Float64Array((e.width * (e.width + 1)) / 2);
    let at = 0;
    r.upperSlices(e.offset, e.width, (s) => (upper.set(s, at), (at += s.length)));
    r.close();
    const old: CoMomentState = { precision: e.precision, layer: e.layer, tensor: e.tensor, width: e.width, n: e.n, mean: encodeF64(v.mean), upper: encodeF64(upper), min: encodeF64(v.min), max: encodeF64(v.max) };
    return old;
  }) as unknown as CoMomentFileEntry[];
  for (const f of readdirSync(dir)) if (f.endsWith('.f64')) rmSync(path.join(dir, f));
}

const differences = async (a: string, b: string, tables = TABLES) => (await Promise.all(tables.map((t) => tableDifferences(a, b, t, TABLE_KEYS[t], 0)))).flat();

test('an old-style shard state (inline base64 co-moments) merges to the same tables', async () => {
  const p = pipeline('sharded');
  const shards = [0, 1].map((index) => ({ index, count: 2 }));
  const dirs: string[] = [];
  for (const shard of shards) dirs.push((await runPipeline(p.cfg(), { ...quiet, shard })).outDir);
  const binary = await mergeShards(dirs, { output: path.join(root, 'merged-binary'), report: false, log: () => undefined });
  for (const d of dirs) {
    const file = path.join(d, 'state.json');
    const s = JSON.parse(readFileSync(file, 'utf8'));
    toInline(s, d);
    writeFileSync(file, JSON.stringify(s));
  }
  const old = await mergeShards(dirs, { output: path.join(root, 'merged-old'), report: false, log: () => undefined });
  assert.equal(await differences(binary.outDir, old.outDir, ['correlation', 'neurons', 'dead']), []);
  assert.equal(JSON.parse(readFileSync(path.join(old.outDir, 'summary.json'), 'utf8')).correlation, JSON.parse(readFileSync(path.join(binary.outDir, 'summary.json'), 'utf8')).correlation);
});

test.run();
