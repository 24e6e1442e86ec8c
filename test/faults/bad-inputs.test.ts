/**
 * Bad inputs, table-driven: each case is files → a run in process → one QuantlensError line
 * naming the file/line/key/node, and nothing under a final name (test/faults/harness.ts).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { assertNothingLeft, caseDir, expectError, runFile } from './harness.ts';
import { sharedPath } from '../helpers/shared.ts';
import { GraphBuilder, tensor } from '../../onnx/builder.ts';
import { quantizeModel } from '../../onnx/quantize/index.ts';

const demo = (extra = '') => `model: demo\ndataset:\n  path: demo\noutput: out\n${extra}`;
const csvPipeline = (dataset: string, extra = '') => `model: demo\ndataset:\n  path: ${dataset}\n${extra}output: out\n`;

interface Case {
  name: string;
  yaml: string;
  files?: Record<string, string | Uint8Array>;
  setup?: (dir: string) => void;
  error: RegExp;
}

const YAML_CASES: Case[] = [
  { name: 'malformed YAML', yaml: 'model: demo\ndataset: [path: x\n', error: /p\.yaml:\d+: invalid YAML/ },
  { name: 'not a mapping', yaml: '- a\n- b\n', error: /p\.yaml: the pipeline file must be a YAML mapping/ },
  { name: 'unknown key', yaml: demo('measures: [neurons]\n'), error: /p\.yaml:5: measures: unknown key \(did you mean "measure"\?\)/ },
  { name: 'unknown nested key', yaml: demo('batch: {max_tokenz: 5}\n'), error: /p\.yaml:5: batch\.max_tokenz: unknown key/ },
  { name: 'key constructor', yaml: demo('constructor: 1\n'), error: /p\.yaml:5: constructor: unknown key/ },
  { name: 'key toString', yaml: demo('toString: 1\n'), error: /p\.yaml:5: toString: unknown key/ },
  { name: 'key hasOwnProperty', yaml: demo('hasOwnProperty: 1\n'), error: /p\.yaml:5: hasOwnProperty: unknown key/ },
  { name: 'key __proto__', yaml: demo('__proto__: {model: x}\n'), error: /p\.yaml:5: __proto__: unknown key/ },
  { name: 'nested key __proto__', yaml: demo('dead: {__proto__: 1}\n'), error: /p\.yaml:5: dead\.__proto__: unknown key/ },
  { name: 'duplicate key', yaml: demo('name: a\nname: b\n'), error: /p\.yaml:6: name: duplicate key/ },
  { name: 'memory_budget_gb .nan', yaml: demo('correlation: {memory_budget_gb: .nan}\n'), error: /p\.yaml:5: correlation\.memory_budget_gb: must be a finite number/ },
  { name: 'dead.hi .inf', yaml: demo('dead: {hi: .inf}\n'), error: /p\.yaml:5: dead\.hi: must be a finite number/ },
  { name: 'dead.lo -.inf', yaml: demo('dead:\n  lo: -.inf\n'), error: /p\.yaml:6: dead\.lo: must be a finite number/ },
  { name: 'huge calibration.bootstrap', yaml: demo('calibration: {bootstrap: 1000000000}\n'), error: /p\.yaml:5: calibration\.bootstrap: must be ≤ 100000/ },
  { name: 'huge calibration.bins', yaml: demo('calibration:\n  bins: 99999999\n'), error: /p\.yaml:6: calibration\.bins: must be ≤ 10000/ },
  { name: 'huge salience.steps', yaml: demo('salience: {steps: 10000000}\n'), error: /p\.yaml:5: salience\.steps: must be ≤ 1024/ },
  { name: 'huge session.intra_op_threads', yaml: demo('session: {intra_op_threads: 1000000}\n'), error: /p\.yaml:5: session\.intra_op_threads: must be ≤ 1024/ },
  { name: 'huge batch.max_tokens', yaml: demo('batch: {max_tokens: 99999999999}\n'), error: /p\.yaml:5: batch\.max_tokens: must be ≤ 16777216/ },
  { name: 'huge batch.max_examples', yaml: demo('batch: {max_examples: 1000000}\n'), error: /p\.yaml:5: batch\.max_examples: must be ≤ 4096/ },
  { name: 'batch.max_examples 0', yaml: demo('batch: {max_examples: 0}\n'), error: /p\.yaml:5: batch\.max_examples: must be ≥ 1/ },
  { name: 'batch.window not a number', yaml: demo('batch: {window: lots}\n'), error: /p\.yaml:5: batch\.window: must be an integer/ },
  { name: 'batch.max_tokens fractional', yaml: demo('batch: {max_tokens: 1.5}\n'), error: /p\.yaml:5: batch\.max_tokens: must be an integer/ },
  { name: 'int beyond the cap', yaml: demo('calibration: {seed: 1099511627776}\n'), error: /p\.yaml:5: calibration\.seed: must be ≤ 4294967295/ },
  { name: 'limit beyond int32', yaml: 'model: demo\ndataset:\n  path: demo\n  limit: 1e12\noutput: out\n', error: /p\.yaml:4: dataset\.limit: must be ≤ 2147483647/ },
  { name: 'dead.lo ≥ dead.hi', yaml: demo('dead: {lo: 0.2, hi: 0.1}\n'), error: /p\.yaml:5: dead\.lo: must be < dead\.hi \(0\.1\)/ },
  { name: 'dead.lo above the default hi', yaml: demo('dead:\n  lo: 0.5\n'), error: /p\.yaml:6: dead\.lo: must be < dead\.hi/ },
  { name: 'shard index ≥ count', yaml: 'model: demo\ndataset:\n  path: demo\n  shard: {index: 4, count: 4}\noutput: out\n', error: /p\.yaml:4: dataset\.shard\.index: must be < shard\.count \(4\)/ },
  { name: 'choices scoring without choices', yaml: demo('scoring: {mode: choices}\n'), error: /p\.yaml:5: scoring\.choices: is required when scoring\.mode is choices/ },
  { name: 'agreement with one precision', yaml: demo('measure: [agreement]\n'), error: /p\.yaml:5: measure: agreement needs at least two precisions/ },
  { name: 'agreement.reference not a precision', yaml: demo('precisions: [fp32, nf4]\nagreement: {reference: q4}\n'), error: /p\.yaml:6: agreement\.reference: "q4" is not one of the precisions/ },
  { name: 'unknown precision', yaml: demo('precisions: [fp32, fp8]\n'), error: /p\.yaml:5: precisions\[1\]: "fp8" is not one of/ },
  { name: 'duplicate precision', yaml: demo('precisions: [fp32, fp32]\n'), error: /p\.yaml:5: precisions: has a duplicate entry/ },
  { name: 'unknown measure', yaml: demo('measure: [neurons, vibes]\n'), error: /p\.yaml:5: measure\[1\]: "vibes" is not one of/ },
  { name: 'empty layers', yaml: demo('layers: []\n'), error: /p\.yaml:5: layers: must not be empty/ },
  { name: 'model missing', yaml: 'dataset:\n  path: demo\n', error: /p\.yaml(:\d+)?: model: is required/ },
  { name: 'dataset missing', yaml: 'model: demo\n', error: /p\.yaml(:\d+)?: dataset: is required|dataset\.path: is required/ },
  { name: 'dataset.limit 0', yaml: 'model: demo\ndataset:\n  path: demo\n  limit: 0\n', error: /p\.yaml:4: dataset\.limit: must be ≥ 1/ },
  { name: 'dataset.skip negative', yaml: 'model: demo\ndataset:\n  path: demo\n  skip: -3\n', error: /p\.yaml:4: dataset\.skip: must be ≥ 0/ },
  { name: 'truncation invalid', yaml: 'model: demo\ndataset:\n  path: demo\n  truncation: middle\n', error: /p\.yaml:4: dataset\.truncation: "middle" is not one of/ },
  { name: 'bool not a bool', yaml: demo('correlation: {clusters: 3}\n'), error: /p\.yaml:5: correlation\.clusters: must be true or false/ },
  { name: 'pipeline over 1 MiB', yaml: demo(`# ${'x'.repeat(1 << 20)}\n`), error: /p\.yaml: pipeline file is \d+ bytes, more than the 1048576 allowed/ },
];

const DATASET_CASES: Case[] = [
  { name: 'CSV without the gold column', yaml: csvPipeline('d.csv', '  gold: answer\n'), files: { 'd.csv': 'prompt,gold\n"Is it?",True\n' }, error: /d\.csv: dataset has no gold column "answer"/ },
  { name: 'empty CSV', yaml: csvPipeline('d.csv'), files: { 'd.csv': 'prompt,gold\n' }, error: /d\.csv: the dataset has no records/ },
  { name: 'JSONL records without the gold key', yaml: csvPipeline('d.jsonl'), files: { 'd.jsonl': '{"prompt": "Is it?"}\n{"prompt": "Or not?"}\n' }, error: /d\.jsonl(:\d+)?: .*gold/ },
  { name: 'JSONL malformed line', yaml: csvPipeline('d.jsonl'), files: { 'd.jsonl': '{"prompt": "a", "gold": "True"}\n{"prompt": \n' }, error: /d\.jsonl:2: / },
  { name: 'JSONL line not an object', yaml: csvPipeline('d.jsonl'), files: { 'd.jsonl': '[1, 2]\n' }, error: /d\.jsonl:1: / },
  { name: 'dataset file missing', yaml: csvPipeline('nope.csv'), error: /nope\.csv/ },
  { name: 'unknown dataset extension', yaml: csvPipeline('d.txt'), files: { 'd.txt': 'hello\n' }, error: /d\.txt.*(format|csv|jsonl|parquet)/ },
  { name: 'Parquet file that is not Parquet', yaml: csvPipeline('d.parquet'), files: { 'd.parquet': 'not parquet at all, no footer' }, error: /d\.parquet/ },
  { name: 'template names a missing column', yaml: csvPipeline('d.csv', '  prompt: "Q: {question}"\n'), files: { 'd.csv': 'prompt,gold\n"Is it?",True\n' }, error: /question/ },
  { name: 'template with an unclosed brace', yaml: csvPipeline('d.csv', '  prompt: "Q: {prompt"\n'), files: { 'd.csv': 'prompt,gold\n"Is it?",True\n' }, error: /dataset\.prompt|prompt/ },
];

/** A tiny one-MatMul model whose weight lives in external data at `location` (patched in place). */
async function externalDataModel(dir: string, location: string): Promise<string> {
  const placeholder = 'X'.repeat(location.length);
  const g = new GraphBuilder('ext');
  g.input('x', 'float', [1, 64]);
  g.initializer('w', tensor('float', [64, 64], Float32Array.from({ length: 64 * 64 }, (_, i) => ((i % 13) - 6) / 10)));
  g.node('MatMul', ['x', 'w'], ['y']);
  g.output('y', 'float', [1, 64]);
  const onnx = path.join(dir, 'model', 'model.onnx');
  mkdirSync(path.dirname(onnx), { recursive: true });
  await g.writeWithExternalData(onnx, path.join(dir, 'model', placeholder), { threshold: 64 });
  const bytes = readFileSync(onnx);
  const at = bytes.indexOf(Buffer.from(placeholder));
  Buffer.from(location).copy(bytes, at);
  writeFileSync(onnx, bytes);
  return onnx;
}

const EXTERNAL_CASES: { name: string; location: string; setup?: (dir: string) => void; error: RegExp }[] = [
  { name: 'location ../../../etc/passwd', location: '../../../../../../etc/passwd', error: /tensor "w": external data location "\.\.\/.*etc\/passwd" leaves the model folder/ },
  { name: 'absolute location', location: '/etc/passwd', error: /tensor "w": external data location "\/etc\/passwd" is an absolute path/ },
  { name: 'relative location leaving the folder', location: '../outside.bin', error: /tensor "w": external data location "\.\.\/outside\.bin" leaves the model folder/ },
  {
    name: 'symlink pointing outside',
    location: 'weights.bin',
    setup: (dir) => {
      writeFileSync(path.join(dir, 'secret.bin'), Buffer.alloc(64 * 64 * 4, 7));
      symlinkSync(path.join(dir, 'secret.bin'), path.join(dir, 'model', 'weights.bin'));
    },
    error: /tensor "w": external data location "weights\.bin" is a symlink that leaves the model folder/,
  },
];

for (const c of [...YAML_CASES, ...DATASET_CASES]) {
  test(`bad input: ${c.name}`, async () => {
    const dir = caseDir({ ...(c.files ?? {}), 'p.yaml': c.yaml });
    c.setup?.(dir);
    await expectError(() => runFile(path.join(dir, 'p.yaml')), c.error);
    assertNothingLeft(dir, path.join(dir, 'out'));
  });
}

for (const c of EXTERNAL_CASES) {
  test(`external data: ${c.name} is refused by quantize`, async () => {
    const dir = caseDir();
    const onnx = await externalDataModel(dir, c.location);
    c.setup?.(dir);
    await expectError(() => quantizeModel(onnx, 'nf4', path.join(dir, 'model', 'model_nf4.onnx')), c.error);
    assertNothingLeft(dir, path.join(dir, 'model'));
  });
}

test('external data: a run on a model with a location outside its folder is refused before any file is written', async () => {
  const tok = sharedPath('models/stories260K-onnx/tokenizer.json', 'external data run');
  if (!tok) return;
  const dir = caseDir();
  await externalDataModel(dir, '../../../../../../etc/passwd');
  copyFileSync(tok, path.join(dir, 'model', 'tokenizer.json'));
  writeFileSync(path.join(dir, 'p.yaml'), 'model: model\nprecisions: [fp32, nf4]\ndataset:\n  path: demo\noutput: out\n');
  await expectError(() => runFile(path.join(dir, 'p.yaml')), /tensor "w": external data location .* leaves the model folder/);
  assertNothingLeft(dir, path.join(dir, 'out'));
});

const MODEL_CASES: Case[] = [
  { name: 'model folder missing', yaml: 'model: ./nope\ndataset:\n  path: demo\noutput: out\n', error: /p\.yaml: model: model folder not found/ },
  { name: 'model folder without an .onnx', yaml: 'model: m\ndataset:\n  path: demo\noutput: out\n', files: { 'm/config.json': '{}' }, error: /no \.onnx file in/ },
  { name: 'two .onnx files, neither model.onnx', yaml: 'model: m\ndataset:\n  path: demo\noutput: out\n', files: { 'm/a.onnx': 'x', 'm/b.onnx': 'y' }, error: /cannot tell which \.onnx is the model/ },
  { name: 'malformed config.json', yaml: 'model: m\ndataset:\n  path: demo\noutput: out\n', files: { 'm/model.onnx': 'x', 'm/config.json': '{"vocab_size": ' }, error: /malformed JSON in .*config\.json/ },
  { name: 'layer that does not exist', yaml: demo('layers: [0, 17]\n'), error: /layers\[1\].*layer 17 does not exist/ },
  { name: 'correlation over its memory budget', yaml: demo('measure: [correlation]\ncorrelation: {memory_budget_gb: 0.0001}\n'), error: /correlation.*(budget|memory)/i },
];

for (const c of MODEL_CASES) {
  test(`bad model: ${c.name}`, async () => {
    const dir = caseDir({ ...(c.files ?? {}), 'p.yaml': c.yaml });
    await expectError(() => runFile(path.join(dir, 'p.yaml')), c.error);
    assertNothingLeft(dir, path.join(dir, 'out'));
  });
}

/** A copy of stories260K-onnx's small files with one of them replaced or linked elsewhere. */
const REAL_MODEL_CASES: { name: string; change: (model: string, dir: string) => void; error: RegExp }[] = [
  {
    name: 'config.json is a symlink out of the folder',
    change: (m, dir) => {
      writeFileSync(path.join(dir, 'elsewhere.json'), '{}');
      rmSync(path.join(m, 'config.json'));
      symlinkSync(path.join(dir, 'elsewhere.json'), path.join(m, 'config.json'));
    },
    error: /config\.json is a symlink that leaves the model folder/,
  },
  {
    name: 'tokenizer.json is a symlink out of the folder',
    change: (m, dir) => {
      writeFileSync(path.join(dir, 'tok.json'), '{}');
      rmSync(path.join(m, 'tokenizer.json'));
      symlinkSync(path.join(dir, 'tok.json'), path.join(m, 'tokenizer.json'));
    },
    error: /tokenizer\.json is a symlink that leaves the model folder/,
  },
  { name: 'corrupt model.onnx', change: (m) => writeFileSync(path.join(m, 'model.onnx'), 'garbage bytes that are not protobuf \u00ff\u00ff\u00ff'), error: /m\/model\.onnx: (corrupt ONNX|not an ONNX)/ },
  { name: "tokenizer.json with a broken model section", change: (m) => writeFileSync(path.join(m, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE', vocab: 7 } })), error: /tokenizer\.json/ },
  { name: 'tokenizer.json not JSON', change: (m) => writeFileSync(path.join(m, 'tokenizer.json'), '{"model": '), error: /tokenizer\.json/ },
];

for (const c of REAL_MODEL_CASES) {
  test(`bad model folder: ${c.name}`, async () => {
    const src = sharedPath('models/stories260K-onnx', c.name);
    if (!src) return;
    const dir = caseDir();
    const m = path.join(dir, 'm');
    const { cpSync } = await import('node:fs');
    cpSync(src, m, { recursive: true });
    c.change(m, dir);
    writeFileSync(path.join(dir, 'p.yaml'), 'model: m\ndataset:\n  path: demo\n  limit: 4\noutput: out\n');
    await expectError(() => runFile(path.join(dir, 'p.yaml')), c.error);
    assertNothingLeft(dir, path.join(dir, 'out'));
  });
}

test('a large YAML is checked in linear time: 40k keys in a mapping take well under the ~90 s the quadratic check took', async () => {
  const keys = Array.from({ length: 40_000 }, (_, i) => `  k${i}: 1`).join('\n');
  const dir = caseDir({ 'p.yaml': `model: demo\ndataset:\n  path: demo\noutput: out\nbatch:\n${keys}\n` });
  const t0 = performance.now();
  await expectError(() => runFile(path.join(dir, 'p.yaml')), /p\.yaml:6: batch\.k0: unknown key/);
  const seconds = (performance.now() - t0) / 1000;
  assert.ok(seconds < 10, `${seconds.toFixed(1)} s`);
});

test('output: the output path is an existing file', async () => {
  const dir = caseDir({ 'p.yaml': 'model: demo\ndataset:\n  path: demo\n  limit: 4\noutput: out\n', out: 'a file' });
  await expectError(() => runFile(path.join(dir, 'p.yaml')), /out/);
});

test.run();
