import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { DEMO_LABEL, demoConfig, demoWeights, ensureDemoModel } from '../../../sources/demo/demo-model.ts';
import { appendGraphOutputs } from '../../../onnx/builder.ts';
import { referenceForward } from '../../onnx/models/llama-reference.ts';
import { tempDir } from '../../helpers/temp.ts';

const tmp = tempDir('demo-model-');
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const tokenizerOf = (dir: string) =>
  new Tokenizer(JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));

test('same seed → byte-identical model.onnx; another seed → different weights', async () => {
  const a = await ensureDemoModel({ dir: path.join(tmp, 'a'), seed: 5 });
  const b = await ensureDemoModel({ dir: path.join(tmp, 'b'), seed: 5 });
  const c = await ensureDemoModel({ dir: path.join(tmp, 'c'), seed: 6 });
  assert.is(sha(path.join(a, 'model.onnx')), sha(path.join(b, 'model.onnx')));
  assert.is.not(sha(path.join(a, 'model.onnx')), sha(path.join(c, 'model.onnx')));
  assert.is(readFileSync(path.join(a, 'tokenizer.json'), 'utf8'), readFileSync(path.join(c, 'tokenizer.json'), 'utf8'));
});

test('an existing folder with matching settings is reused; a stale stamp triggers regeneration', async () => {
  const dir = await ensureDemoModel({ dir: path.join(tmp, 'reuse'), seed: 1 });
  const model = path.join(dir, 'model.onnx');
  const t0 = statSync(model).mtimeMs;
  await new Promise((r) => setTimeout(r, 20));
  await ensureDemoModel({ dir, seed: 1 });
  assert.is(statSync(model).mtimeMs, t0, 'not rewritten');
  writeFileSync(path.join(dir, 'quantlens-demo.json'), '{"settings_sha256":"other"}');
  await ensureDemoModel({ dir, seed: 1 });
  assert.ok(statSync(path.join(dir, 'model.onnx')).mtimeMs > t0, 'regenerated');
});

test('two builds of one cache at once: the first complete folder stays in place, the second build is dropped', async () => {
  // Both start before either finishes (each yields at its first file write). Moving the first
  // folder aside to swap in the second left the path absent between two renames, where another
  // process opening the model failed ("model folder not found").
  const dir = path.join(tmp, 'race');
  let firstInode = -1;
  const done = (d: string) => {
    if (firstInode < 0) firstInode = statSync(d).ino;
    return d;
  };
  const dirs = await Promise.all([ensureDemoModel({ dir, seed: 3 }).then(done), ensureDemoModel({ dir, seed: 3 }).then(done)]);
  assert.equal(dirs, [dir, dir]);
  assert.is(statSync(dir).ino, firstInode, 'the folder the first caller got is the one left in place');
  assert.equal(readdirSync(tmp).filter((n) => n.startsWith('race')), ['race'], 'no temporary or moved-aside folder left');
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  assert.ok(session.inputNames.includes('input_ids'));
  await session.release();
});

test('labelled as random in config.json and in ONNX metadata_props; prompts.jsonl beside it', async () => {
  const dir = await ensureDemoModel({ dir: path.join(tmp, 'a'), seed: 5 });
  const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.is(cfg.quantlens_demo, DEMO_LABEL);
  assert.equal([cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id, cfg.intermediate_size], [1, 2, 0, 192]);
  const bytes = readFileSync(path.join(dir, 'model.onnx'));
  assert.ok(bytes.includes(Buffer.from('quantlens_demo')) && bytes.includes(Buffer.from(DEMO_LABEL)));
  const lines = readFileSync(path.join(dir, 'prompts.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.length >= 64);
  for (const l of lines) assert.ok(typeof l.prompt === 'string' && (l.gold === 'True' || l.gold === 'False'));
});

test('tokenizer: BOS first, decode round trip, byte fallback for non-ASCII', async () => {
  const dir = await ensureDemoModel({ dir: path.join(tmp, 'a'), seed: 5 });
  const tok = tokenizerOf(dir);
  for (const text of ['Respond with True or False only.\nis 3 plus 4 equal to 7\nAnswer:', 'naïve café 東京', 'x  y']) {
    const ids = tok.encode(text).ids;
    assert.is(ids[0], 1);
    assert.ok(ids.every((i: number) => i >= 0 && i < demoConfig('tiny', 1000).vocabSize));
    assert.is(tok.decode(ids, { skip_special_tokens: true }), text);
  }
  assert.ok(tok.encode('True').ids.length === 2, '"▁True" is one token');
});

test('loads in onnxruntime-node; logits finite and equal to a float64 reference on 2 sequences; act_fn outputs by name', async () => {
  const seed = 5;
  const dir = await ensureDemoModel({ dir: path.join(tmp, 'a'), seed });
  const tok = tokenizerOf(dir);
  const vocab = Object.keys((JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as any).model.vocab).length;
  const cfg = demoConfig('tiny', vocab);
  const weights = demoWeights(cfg, seed);
  const a = tok.encode('is the sun a star').ids;
  const b = tok.encode('is 12 bigger than 7? Answer:').ids;
  const S = Math.max(a.length, b.length);
  const ids = [a, b].map((e) => [...Array(S - e.length).fill(0), ...e]);
  const mask = [a, b].map((e) => [...Array(S - e.length).fill(0), ...Array(e.length).fill(1)]);
  assert.ok(mask[0][0] === 0 || mask[1][0] === 0, 'one row is left-padded');
  const acts = Array.from({ length: cfg.numLayers }, (_, i) => `/model/layers.${i}/mlp/act_fn/Mul_output_0`);
  const model = appendGraphOutputs(readFileSync(path.join(dir, 'model.onnx')), acts.map((name) => ({ name })));
  const s = await ort.InferenceSession.create(model);
  const out = await s.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.flat().map(BigInt)), [2, S]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask.flat().map(BigInt)), [2, S]),
  });
  const logits = out.logits.data as Float32Array;
  for (const x of logits) assert.ok(Number.isFinite(x));
  for (const n of acts) assert.equal(out[n].dims, [2, S, 192]);
  let d = 0, spread = 0;
  for (let r = 0; r < 2; r++) {
    const ref = referenceForward(cfg, weights, ids[r], mask[r]);
    for (let t = 0; t < S; t++) {
      if (!mask[r][t]) continue;
      for (let v = 0; v < vocab; v++) {
        d = Math.max(d, Math.abs(logits[(r * S + t) * vocab + v] - ref.logits[t][v]));
        spread = Math.max(spread, Math.abs(ref.logits[t][v]));
      }
    }
  }
  assert.ok(spread > 1, `logits are not trivially small (max |logit| ${spread})`);
  assert.ok(d < 1e-4, `max |Δlogit| ${d}`);
});

test('bench size: d_ff ≥ 1024 and generates a loadable model', async () => {
  const cfg = demoConfig('bench', 432);
  assert.ok(cfg.intermediateSize >= 1024);
  const dir = await ensureDemoModel({ dir: path.join(tmp, 'bench'), size: 'bench', seed: 0 });
  const s = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  const out = await s.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from([1n, 50n, 60n]), [1, 3]), attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n]), [1, 3]) });
  assert.equal(out.logits.dims, [1, 3, JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')).vocab_size]);
});

test.run();
