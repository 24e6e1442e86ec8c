/**
 * `precisions:` entries beyond the built-in names: `model_<tag>` (a prebuilt file of the folder,
 * used as it is) and `{name, model}` (a precision's own model). Paths resolve from the YAML file;
 * malformed entries fail on one line naming the line and key; a model whose vocabulary differs
 * from the pipeline's is refused (a tokenizer that only encodes some text differently is noted).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { resolvePrecisionModel } from '../../pipelines/precisions.ts';
import { openModelFolder } from '../../sources/model/folder.ts';
import { checkSameTokenizer } from '../../sources/model/same-tokenizer.ts';
import { QuantlensError } from '../../core/errors.ts';
import { sharedPath } from '../helpers/shared.ts';

const base = (precisions: string) => `model: m\nprecisions: ${precisions}\ndataset:\n  path: d.csv\n`;

test('precision entries: names, model_<tag>, {name, model} resolved from the YAML folder', () => {
  const cfg = parsePipeline(base('[fp32, model_q4, {name: int4, model: ../other/int4}]'), '/x/y/p.yaml');
  assert.equal(cfg.precisions, ['fp32', 'model_q4', 'int4']);
  assert.equal(cfg.precision_models, { int4: '/x/other/int4' });
  assert.is(cfg.quantization.allow_partial, false);
  assert.is(parsePipeline(base('[fp32]') + 'quantization: {allow_partial: true}\n', '/x/p.yaml').quantization.allow_partial, true);
  assert.is(parsePipeline(base('[fp32, nf4]'), '/x/p.yaml').precision_models, undefined);
});

test('malformed precision entries: one line with the line and key', () => {
  const cases: [string, RegExp][] = [
    ['[fp32, int3]', /p\.yaml:2: precisions\[1\]: "int3" is not one of .*model_<tag>/],
    ['[fp32, {name: int4}]', /p\.yaml:2: precisions\[1\]\.model: is required/],
    ['[fp32, {name: "a b", model: x}]', /precisions\[1\]\.name: "a b" must be/],
    ['[fp32, {name: fp32, model: x}]', /precisions: has a duplicate entry/],
    ['[fp32, {name: q, model: x, bits: 4}]', /precisions\[1\]\.bits: unknown key/],
    ['[]', /precisions: must not be empty/],
  ];
  for (const [list, re] of cases) {
    try {
      parsePipeline(base(list), '/x/p.yaml');
      assert.unreachable(list);
    } catch (e) {
      assert.instance(e, QuantlensError, list);
      assert.match(String((e as Error).message), re, list);
      assert.not.match((e as Error).message, /\n/);
    }
  }
});

test('per-precision model path: same tokenizer accepted (genai fp32 / int4), different vocabulary refused; missing model_<tag> named', async () => {
  const fp32 = sharedPath('models/exporters/genai-llama-fp32', 'precision entries');
  const int4 = sharedPath('models/exporters/genai-llama-int4', 'precision entries');
  const gpt2 = sharedPath('models/tiny-random-gpt2-fp32', 'precision entries');
  const tjs = sharedPath('models/exporters/tjs-llama', 'precision entries');
  if (!fp32 || !int4 || !gpt2 || !tjs) return;
  const a = await openModelFolder(fp32);
  // Same vocabulary; genai int4's tokenizer.json (Metaspace) encodes leading-space text differently: noted, not refused.
  assert.match(String(await checkSameTokenizer(a, await openModelFolder(int4), 'precisions: int4')), /same vocabulary, but its own tokenizer encodes/);
  assert.is(await checkSameTokenizer(a, await openModelFolder(tjs), 'precisions: tjs'), null);
  try {
    await checkSameTokenizer(a, await openModelFolder(gpt2), 'precisions: gpt2');
    assert.unreachable();
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.match((e as Error).message, /^precisions: gpt2: (model vocabulary|tokenizer differs)/);
  }
  const cfg = parsePipeline(`model: ${tjs}\nprecisions: [fp32, model_q8, {name: int4, model: ${int4}}]\ndataset:\n  path: d.csv\n`, '/x/p.yaml');
  const folder = await openModelFolder(tjs);
  await resolvePrecisionModel(folder, 'model_q8', cfg, 'fp32').then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, /no model_q8\.onnx \(prebuilt: .*model_q4.*\)/),
  );
  const r = await resolvePrecisionModel(folder, 'int4', cfg, 'fp32');
  assert.is(r.path, path.join(int4, 'model.onnx'));
  assert.equal((r.settings.record as any).decoder_fraction_quantized, 1);
  assert.equal((r.settings.formats as any[])[0].bits, 4);
  assert.match(String(r.settings.tokenizer), /same vocabulary/);
});

test.run();
