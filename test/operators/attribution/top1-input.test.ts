/**
 * With the model's own top-1 as target, F_input comes from the top-1 run's logits (lig.ts: no
 * α = 1 row is run): it equals the graph's objective at the input (the α = 1 row of an explicit
 * target), and the attributions are the same, on stories260K at layers 0 and 4.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { loadTokenizer } from '../../../sources/tokenizer.ts';
import { attributeExample, createAttributionSession } from '../../../operators/attribution/lig.ts';
import { sharedPath } from '../../helpers/shared.ts';

for (const layer of [0, 4]) {
  test(`stories260K layer ${layer}: top-1 target's F_input (from the logits) == the objective at the input`, async () => {
    const dir = sharedPath('models/stories260K-onnx', 'top-1 F_input');
    if (!dir) return;
    const tensor = `/model/layers.${layer}/mlp/act_fn/Mul_output_0`;
    const s = await createAttributionSession(path.join(dir, 'model.onnx'), tensor);
    try {
      const ids = (await loadTokenizer(dir)).encode('Respond with True or False only.\nis the sky blue on a clear day\nAnswer:');
      const opts = { steps: 6, onWarning: () => {} };
      const top1 = await attributeExample(s, { ids }, tensor, opts);
      const given = await attributeExample(s, { ids }, tensor, { ...opts, target: top1.target });
      assert.ok(Math.abs(top1.F_input - given.F_input) <= 1e-5 * Math.max(1, Math.abs(given.F_input)), `F_input ${top1.F_input} vs ${given.F_input}`);
      assert.ok(top1.F_input !== top1.F_baseline, 'the endpoints differ');
      // Rows may fall into other runs (one row fewer): equal to float32 rounding of the sums.
      const scale = given.attributions.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      top1.attributions.forEach((v, j) => assert.ok(Math.abs(v - given.attributions[j]) <= 1e-6 * scale, `value ${j}: ${v} vs ${given.attributions[j]}`));
    } finally {
      await s.session.release();
    }
  });
}

test.run();
