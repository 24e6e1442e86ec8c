/**
 * Bad model folders through the real CLI: a model whose MLP activation cannot be found, and one
 * with an input quantlens cannot feed. Each gives one line naming the node or input, a non-zero
 * exit, and nothing written.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GraphBuilder } from '../../onnx/builder.ts';
import { SeededRandom } from '../../core/random.ts';
import { sharedPath } from '../helpers/shared.ts';
import { tempDir } from '../helpers/temp.ts';

const bin = path.resolve(import.meta.dirname, '..', '..', 'pipelines', 'bin.mjs');
const D = 8, F = 16;

/** A one-layer decoder-shaped model: embed → norm → fc1 → act → fc2 → residual → lm_head. */
function tinyDecoder(act: (g: GraphBuilder, x: string) => string, extraInput = false, V = 512): Uint8Array {
  const rnd = new SeededRandom(11);
  const g = new GraphBuilder('tiny');
  const w = (r: number, c: number) => g.constF32(Array.from({ length: r * c }, () => rnd.normal() * 0.3), [r, c]);
  g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  g.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']);
  let x = g.node('Gather', [w(V, D), 'input_ids'], 1, { axis: 0 }, { name: '/embed/Gather' })[0];
  if (extraInput) {
    g.input('recurrent_state', 'float', ['batch_size', 1, D]);
    x = g.node('Add', [x, 'recurrent_state'], 1, {}, { name: '/state/Add' })[0];
  }
  const n = g.node('LayerNormalization', [x, g.constF32(new Array(D).fill(1), [D]), g.constF32(new Array(D).fill(0), [D])], 1, { axis: -1 }, { name: '/model/layers.0/norm' })[0];
  const h = act(g, g.node('MatMul', [n, w(D, F)], 1, {}, { name: '/model/layers.0/mlp/fc1/MatMul' })[0]);
  const y = g.node('Add', [x, g.node('MatMul', [h, w(F, D)], 1, {}, { name: '/model/layers.0/mlp/fc2/MatMul' })[0]])[0];
  g.node('MatMul', [y, w(D, V)], ['logits'], {}, { name: '/lm_head/MatMul' });
  g.output('logits', 'float', ['batch_size', 'sequence_length', V]);
  return g.toModel();
}

function runOn(model: Uint8Array, config: Record<string, unknown> = { num_hidden_layers: 1, vocab_size: 512, hidden_act: 'relu' }): { code: number | null; stderr: string; out: string; dir: string } | null {
  const tok = sharedPath('models/exporters/hf-llama/tokenizer.json', 'bad model folders');
  const data = sharedPath('datasets/boolq.csv', 'bad model folders');
  if (!tok || !data) return null;
  const dir = tempDir('ql-badmodel-');
  const modelDir = path.join(dir, 'model');
  mkdirSync(modelDir);
  writeFileSync(path.join(modelDir, 'model.onnx'), model);
  writeFileSync(path.join(modelDir, 'config.json'), JSON.stringify(config));
  copyFileSync(tok, path.join(modelDir, 'tokenizer.json'));
  writeFileSync(path.join(dir, 'p.yaml'), `model: model\ndataset:\n  path: ${data}\n  limit: 4\nmeasure: [predictions, neurons]\noutput: out\n`);
  const r = spawnSync(process.execPath, [bin, 'run', path.join(dir, 'p.yaml'), '--quiet'], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  return { code: r.status, stderr: r.stderr.trim(), out: path.join(dir, 'out'), dir };
}

function expectCleanFailure(r: NonNullable<ReturnType<typeof runOn>>, needle: string): void {
  assert.ok(r.code !== 0 && r.code !== null, `exit code ${r.code}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() && !/^quantlens: .*→/.test(l));
  assert.is(lines.length, 1, `one line, got:\n${r.stderr}`);
  assert.ok(lines[0].includes(needle), lines[0]);
  assert.not.ok(existsSync(r.out) && readdirSync(r.out, { recursive: true }).length > 0, 'no output files');
  assert.equal(readdirSync(r.dir).filter((f) => f.includes('.tmp-')), []);
}

test('control: the same folder with a ReLU MLP runs', () => {
  const r = runOn(tinyDecoder((g, x) => g.node('Relu', [x], 1, {}, { name: '/model/layers.0/mlp/act/Relu' })[0]));
  if (!r) return;
  assert.is(r.code, 0, r.stderr);
});

test('an MLP activation that cannot be found: one line naming the node', () => {
  const r = runOn(tinyDecoder((g, x) => g.node('Softsign', [x], 1, {}, { name: '/model/layers.0/mlp/act/Softsign' })[0]));
  if (!r) return;
  expectCleanFailure(r, 'node "/model/layers.0/mlp/act/Softsign" (Softsign)');
  assert.match(r.stderr, /layers\[0\]: cannot find the MLP activation of layer 0/);
});

test('an input that cannot be fed: one line naming the input', () => {
  const r = runOn(tinyDecoder((g, x) => g.node('Relu', [x])[0], true));
  if (!r) return;
  expectCleanFailure(r, 'model input "recurrent_state" is not understood (float32 [batch_size, 1, 8])');
});

test('no vocab_size in the config: the logits width is the model\'s id range, and a larger tokenizer is refused', () => {
  const r = runOn(tinyDecoder((g, x) => g.node('Relu', [x])[0], false, 256), { num_hidden_layers: 1 });
  if (!r) return;
  expectCleanFailure(r, "tokenizer vocabulary (512) exceeds the model's (256)");
});

test.run();
