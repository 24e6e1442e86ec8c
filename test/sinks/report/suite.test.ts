/**
 * The cross-task report without a browser: writeSuiteReport's task × precision table equals each
 * task's files (brute force here), its CSV carries the same values, and `quantlens report --suite`
 * writes it into the runs' parent folder, refusing to replace a task's own report.
 */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { writeSuiteReport } from '../../../sinks/report/index.ts';
import { makeRun, type Fixture } from './fixture.ts';
import { marks, tableHtml } from './html-marks.ts';
import { tempDir } from '../../helpers/temp.ts';

const bin = path.resolve(import.meta.dirname, '..', '..', '..', 'pipelines', 'bin.mjs');
const TASKS = ['boolq', 'piqa', 'hellaswag', 'toxicity'];

function highShare(f: Fixture, p: string): number {
  const rows = f.correlation.filter((c) => c.precision === p && c.bin_lo !== null);
  return rows.filter((c) => c.bin_lo! >= 0.8 - 1e-12).reduce((a, c) => a + c.pairs, 0) / rows.reduce((a, c) => a + c.pairs, 0);
}

function taskRuns(): { parent: string; runs: Fixture[]; dirs: string[] } {
  const parent = tempDir('quantlens-paper-');
  const runs = TASKS.map((t, i) => makeRun({ name: `paper-${t}`, datasetPath: `/d/${t}.csv`, seed: 500 + i }));
  const dirs = runs.map((r, i) => { const d = path.join(parent, TASKS[i]); mkdirSync(d); renameSync(r.dir, d); r.dir = d; return d; });
  return { parent, runs, dirs };
}

test('task × precision table and CSV equal each task\'s summary and Parquet files', async () => {
  const { parent, runs, dirs } = taskRuns();
  const out = path.join(parent, 'suite');
  const res = await writeSuiteReport(dirs, out);
  const html = readFileSync(res.html, 'utf8');
  const ms = marks(tableHtml(html, 'tasks')!);
  assert.equal(ms.length, 4 * 3 * 6);
  const csv = readFileSync(path.join(out, 'tables', 'suite-tasks.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  const col = (name: string) => csv[0].indexOf(name);
  runs.forEach((f, i) => {
    for (const p of ['fp32', 'int8', 'nf4']) {
      const want: Record<string, number> = {
        accuracy: f.summary.precisions[p].accuracy, mean_confidence: f.summary.precisions[p].mean_confidence, ace: f.summary.precisions[p].ace,
        dead: f.dead.filter((d) => d.precision === p).reduce((a, d) => a + d.dead_count, 0),
        salient: f.salience.filter((s) => s.precision === p && s.salient_examples > 0).length,
        high_r_share: highShare(f, p),
      };
      const line = csv.find((r) => r[0] === TASKS[i] && r[1] === p)!;
      for (const [k, v] of Object.entries(want)) {
        const m = ms.find((x) => x.attrs['data-metric'] === `task_${k}` && x.attrs['data-task'] === TASKS[i] && x.attrs['data-precision'] === p)!;
        assert.ok(Math.abs(Number(m.attrs['data-value']) - v) <= 1e-12 * Math.max(1, v), `${TASKS[i]} ${p} ${k}`);
        assert.ok(Math.abs(Number(line[col(k)]) - v) <= 1e-12 * Math.max(1, v), `csv ${TASKS[i]} ${p} ${k}`);
      }
      const unconverged = Object.values(f.summary.salience[p]).reduce((a: number, l: any) => a + l.completeness.unconverged_example_ids.length, 0);
      assert.equal(Number(line[col('salient_unconverged')]), unconverged);
    }
  });
  for (const d of dirs) assert.ok(!existsSync(path.join(d, 'report.html')), 'task folders are left alone');
  assert.ok(res.figures.every((f) => path.basename(f).startsWith('suite-')));
});

test('quantlens report --suite writes into the runs\' parent folder by default', () => {
  const { parent, dirs } = taskRuns();
  const ok = spawnSync(process.execPath, [bin, 'report', '--suite', ...dirs], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), path.join(parent, 'report.html'));
  assert.match(readFileSync(path.join(parent, 'report.html'), 'utf8'), /quantlens cross-task report: boolq, piqa, hellaswag, toxicity/);
});

test('a task folder as the suite folder is refused by name, before anything is written', async () => {
  const { dirs } = taskRuns();
  await assert.rejects(writeSuiteReport(dirs, dirs[1]), (e: any) => e.code === 'CONFIG' && e.message.includes(dirs[1]) && /must differ/.test(e.message));
  assert.ok(!existsSync(path.join(dirs[1], 'report.html')));
  await assert.rejects(writeSuiteReport(dirs, path.join(dirs[0], '..', 'x'), { tasks: ['a'] }), /1 task names for 4 run folders/);
});

test.run();
