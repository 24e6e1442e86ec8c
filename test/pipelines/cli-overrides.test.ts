/**
 * Command-line overrides (--set and the shortcuts) are typed by the schema and validated like the
 * YAML, with errors naming the flag; and the CLI's conventions: usage errors exit 2 with a
 * suggestion, bare `quantlens` prints help, --version is quantlens's own.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { collectOverrides } from '../../pipelines/cli-run.ts';
import { buildParser } from '../../pipelines/cli-parser.ts';
import { isQuantlensError } from '../../core/errors.ts';
import { tempDir } from '../helpers/temp.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
const bin = path.join(repo, 'pipelines', 'bin.mjs');
const dir = tempDir('ql-cli-');
const file = path.join(dir, 'p.yaml');
const YAML = 'model: demo\ndataset:\n  path: demo\n  limit: 50\nprecisions: [fp32]\nbatch: {max_examples: 4}\noutput: out\n';
writeFileSync(file, YAML);

const parse = (args: Record<string, unknown>) => parsePipeline(YAML, file, collectOverrides(args));

function usageError(args: Record<string, unknown>): string {
  try {
    parse(args);
  } catch (e) {
    assert.ok(isQuantlensError(e), String(e));
    assert.is(e.code, 'USAGE', e.message);
    return e.message;
  }
  throw new Error(`no error for ${JSON.stringify(args)}`);
}

test('--set is typed by the schema: int, number, bool, verbatim string, list, new mapping', () => {
  const cfg = parse({
    set: ['batch.max_examples=8', 'dead.lo=-0.25', 'correlation.clusters=false', 'dataset.prompt=Q: {prompt}\\nAnswer:', 'scoring.mode=choices', 'scoring.choices=[" True", " False"]', 'activations.every=3'],
  });
  assert.is(cfg.batch.max_examples, 8);
  assert.is(cfg.batch.max_tokens, 4096, 'siblings keep their defaults');
  assert.is(cfg.dead.lo, -0.25);
  assert.is(cfg.correlation.clusters, false);
  assert.is(cfg.dataset.prompt, 'Q: {prompt}\\nAnswer:', 'a string value is taken verbatim, colon and all');
  assert.is(cfg.dataset.limit, 50, 'keys the flag does not name stay as in the file');
  assert.equal(cfg.scoring, { mode: 'choices', choices: [' True', ' False'] });
  assert.equal(cfg.activations, { format: 'arrow', every: 3 }, 'a mapping absent from the file is created, with its defaults');
});

test('shortcuts: --precisions, --measure, --layers, --limit, --output (relative to the current folder)', () => {
  const cfg = parse({ precisions: 'fp32,nf4', measure: 'predictions,dead', layers: '0,-1,last', limit: '7', output: 'elsewhere/r' });
  assert.equal(cfg.precisions, ['fp32', 'nf4']);
  assert.equal(cfg.measure, ['predictions', 'dead']);
  assert.equal(cfg.layers, [0, -1, 'last'], 'layer indices become integers, names stay strings');
  assert.is(cfg.dataset.limit, 7);
  assert.is(cfg.output, path.resolve(process.cwd(), 'elsewhere/r'));
  assert.is(parse({}).output, path.join(dir, 'out'), 'without the flag: relative to the YAML file');
});

test('comma lists keep their items verbatim (label spaces matter)', () => {
  assert.equal(parse({ set: ['scoring.mode=choices', 'scoring.choices= True, False'] }).scoring.choices, [' True', ' False']);
  assert.match(usageError({ precisions: 'fp32, nf4' }), /^--precisions: precisions\[1\]: " nf4" is not one of/);
});

test('--set wins over a shortcut; YAML list syntax works too', () => {
  const cfg = parse({ precisions: 'fp32,nf4', set: ['precisions=[fp32, q4]', 'dataset.limit=2'], limit: '9' });
  assert.equal(cfg.precisions, ['fp32', 'q4']);
  assert.is(cfg.dataset.limit, 2);
});

test('wrong overrides: one line naming the flag, the key and the problem', () => {
  assert.is(usageError({ set: ['batch.max_examples=abc'] }), '--set batch.max_examples=abc: batch.max_examples: must be an integer');
  assert.is(usageError({ set: ['batch.max_exmples=2'] }), '--set batch.max_exmples=2: batch.max_exmples: unknown key (did you mean "max_examples"?)');
  assert.is(usageError({ precisions: 'fp32,fp33' }), '--precisions: precisions[1]: "fp33" is not one of fp32, fp16, llm-int8, nf4, fp4, q4, int8, dynamic-int8, model_<tag> (a prebuilt file) or {name, model}');
  assert.is(usageError({ measure: 'neurons,neurons' }), '--measure: measure: has a duplicate entry');
  assert.is(usageError({ limit: '0' }), '--limit: dataset.limit: must be ≥ 1');
  assert.is(usageError({ layers: '0,1.5' }), '--layers: layers[1]: must be first, middle, last, an integer or a tensor name');
  assert.is(usageError({ set: ['correlation.clusters=maybe'] }), '--set correlation.clusters=maybe: correlation.clusters: must be true or false');
  assert.is(usageError({ set: ['batch'] }), '--set: needs key.path=value (e.g. --set batch.max_examples=8), got "batch"');
  assert.match(usageError({ set: ['precisions.x=1'] }), /^--set precisions\.x=1: precisions is a list in .*p\.yaml, not a mapping$/);
  // The file's own errors still name the file and line, not a flag.
  assert.throws(() => parsePipeline(YAML + 'dead: {lo: x}\n', file, collectOverrides({ limit: '3' })), /p\.yaml:8: dead\.lo: must be a number/);
});

function cli(args: string[], cwd = dir) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd, env: { ...process.env, CI: 'true' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.trim() };
}

test('CLI exit codes: 2 for usage (with a suggestion), 0 for bare help and --version, 1 for input errors', () => {
  const typo = cli(['rnu', file]);
  assert.is(typo.code, 2);
  assert.is(typo.stderr, 'quantlens: unknown command "rnu": Did you mean run? (see quantlens --help)');
  const unknown = cli(['run', file, '--precision', 'fp32']);
  assert.is(unknown.code, 2);
  assert.match(unknown.stderr, /^quantlens: Unknown argument: precision/);
  const badSet = cli(['validate', file, '--set', 'batch.window=0']);
  assert.is(badSet.code, 2, badSet.stderr);
  assert.is(badSet.stderr, 'quantlens: --set batch.window=0: batch.window: must be ≥ 1');
  assert.is(cli(['run', file, '--shard', '3/2']).code, 2);
  const bare = cli([]);
  assert.is(bare.code, 0);
  assert.match(bare.stdout, /Commands:[\s\S]*quantlens run <pipeline\.\.>[\s\S]*Exit codes: 0 ok, 1 input or run error/);
  const version = cli(['--version']);
  assert.is(version.stdout.trim(), JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).version);
  const missing = cli(['validate', path.join(dir, 'nope.yaml')]);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /nope\.yaml: pipeline file not found/);
});

test('CLI: validate with overrides; --out is --output', () => {
  const ok = cli(['validate', file, '--precisions', 'fp32,nf4', '--layers', '0,2', '--set', 'batch.max_examples=2', '--out', 'o2']);
  assert.is(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /ok — fp32, nf4; layers 0 \(.*\), 2 \(.*\)/);
});

const helpOf = (cmd: string) =>
  new Promise<string>((resolve) => buildParser([cmd, '--help']).parse([cmd, '--help'], {}, (_e: unknown, _a: unknown, out: string) => resolve(out)));

test('one spelling: every command that writes takes --output, with --out as its alias', async () => {
  for (const cmd of ['run', 'merge', 'quickstart', 'quantize', 'convert', 'report']) assert.match(await helpOf(cmd), /--output, --out/, cmd);
  for (const cmd of ['run', 'validate', 'quickstart']) assert.match(await helpOf(cmd), /--set[\s\S]*--precisions[\s\S]*--measure[\s\S]*--layers[\s\S]*--limit/, cmd);
  assert.match(await helpOf('quantize'), /--no-double-quant/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
