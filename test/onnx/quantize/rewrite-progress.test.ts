/** quantizeModel reports (weights done, weights in all) as it goes: the CLI's quantization progress line. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ensureDemoModel } from '../../../sources/demo/demo-model.ts';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { tempDir } from '../../helpers/temp.ts';

test('onProgress: 0 of N first, then one step per quantized weight up to N; the file is unchanged by it', async () => {
  const dir = tempDir('ql-qprog-');
  const model = path.join(await ensureDemoModel({ dir: path.join(dir, 'model') }), 'model.onnx');
  const calls: [number, number][] = [];
  const r = await quantizeModel(model, 'q4', path.join(dir, 'a.onnx'), { onProgress: (d, t) => calls.push([d, t]) });
  await quantizeModel(model, 'q4', path.join(dir, 'b.onnx'));
  const n = r.quantized.length; // the demo model shares no weight between MatMuls
  assert.ok(n > 0);
  assert.equal(calls, Array.from({ length: n + 1 }, (_, k) => [k, n]));
  assert.ok(readFileSync(path.join(dir, 'a.onnx')).equals(readFileSync(path.join(dir, 'b.onnx'))));
  assert.not.ok('onProgress' in r.settings, 'not a setting (the cache key ignores it)');
  rmSync(dir, { recursive: true, force: true });
});

test.run();
