/**
 * Peak memory of one attribution run against the rows it holds: what `salience.memory_budget_gb`
 * buys, measured. For each R, a fresh child process opens the attribution session of a model's
 * layer, runs LIG on one prompt with the budget set to exactly R rows per ONNX Runtime run
 * (R × lig.ts's attributionRowBytes), and reports from /proc/self/status:
 *   open      VmRSS after the session is created (weights not yet paged in),
 *   peak      VmHWM at the end (the whole attribution, every run),
 *   step      peak − the peak of the same child's warm-up at 1 row per run, which had already paged
 *             in the weights: what R rows add over one.
 * The estimate's step part (pipelines/budget.ts) is attributionStepFactor × the budget, so it
 * covers R rows when the measured peak over the open session is ≤ the attribution part.
 *
 *   node --import tsx bench/attribution-rows.ts <model dir> [layer=0] [steps=8] [rows=1,2,4,8] [--no-branch]
 * (--no-branch: the graph without the backward branch, onnx/backward/backward-branch.ts, for a before/after.)
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadTokenizer } from '../sources/tokenizer.ts';
import { attributeExample, createAttributionSession, releaseAttributionSession, sessionRowBytes } from '../operators/attribution/lig.ts';
import { attributionStepFactor } from '../pipelines/budget.ts';

const MiB = 1024 ** 2;
const PROMPT = 'Respond with True or False only.\ndo good samaritan laws protect those who help at an accident\nAnswer:';

function status(key: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(`${key}:`));
  return Number(line!.split(/\s+/)[1]) * 1024;
}

/** In the child: one R, printed as one JSON line. */
async function child(dir: string, layer: number, steps: number, rows: number, backwardBranch: boolean): Promise<void> {
  const tensor = `/model/layers.${layer}/mlp/act_fn/Mul_output_0`;
  const ids = (await loadTokenizer(dir)).encode(PROMPT);
  const s = await createAttributionSession(path.join(dir, 'model.onnx'), tensor, { backwardBranch });
  const open = status('VmRSS');
  const rowBytes = sessionRowBytes(s, ids.length);
  const opts = { steps, onWarning: () => {} };
  await attributeExample(s, { ids }, tensor, { ...opts, memoryBudgetBytes: rowBytes });
  const oneRow = status('VmHWM');
  await attributeExample(s, { ids }, tensor, { ...opts, memoryBudgetBytes: rows * rowBytes });
  const peak = status('VmHWM');
  console.log(JSON.stringify({ rows, tokens: ids.length, width: s.width, vocab: s.vocab, rowBytes, open, oneRow, peak }));
  await releaseAttributionSession(s);
}

function parent(dir: string, layer: number, steps: number, rowsList: number[], backwardBranch: boolean): void {
  const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const shape = { vocab: cfg.vocab_size, hidden: cfg.hidden_size, layers: cfg.num_hidden_layers };
  console.log(`attribution run memory: ${dir}, layer ${layer}, ${steps} steps${backwardBranch ? '' : ', graph without the backward branch'}; one child process per row count`);
  console.log('rows  budget MiB  open RSS MiB  1-row peak MiB  peak MiB  peak − open MiB  step (peak − 1-row) MiB  estimate step part MiB');
  for (const rows of rowsList) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', dir, String(layer), String(steps), String(rows), String(backwardBranch)], { encoding: 'utf8' });
    const line = r.stdout.trim().split('\n').find((l) => l.startsWith('{'));
    if (r.status !== 0 || !line) throw new Error(`child for ${rows} rows failed (exit ${r.status}): ${r.stderr.slice(-500)}`);
    const x = JSON.parse(line) as { rows: number; width: number; rowBytes: number; open: number; oneRow: number; peak: number };
    const budget = rows * x.rowBytes;
    const f = (b: number) => (b / MiB).toFixed(1).padStart(8);
    console.log(`${String(rows).padStart(4)}  ${f(budget)}    ${f(x.open)}      ${f(x.oneRow)}    ${f(x.peak)}         ${f(x.peak - x.open)}                 ${f(x.peak - x.oneRow)}                ${f(attributionStepFactor(shape, x.width) * budget)}`);
  }
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') await child(argv[1], Number(argv[2]), Number(argv[3]), Number(argv[4]), argv[5] === 'true');
else {
  const pos = argv.filter((a) => a !== '--no-branch');
  parent(path.resolve(pos[0]), Number(pos[1] ?? 0), Number(pos[2] ?? 8), (pos[3] ?? '1,2,4,8').split(',').map(Number), !argv.includes('--no-branch'));
}
