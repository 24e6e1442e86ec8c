/**
 * The exporter matrix: every model folder in ../shared/models/exporters/ (Optimum-style torch
 * exports, transformers.js layouts, onnxruntime-genai builds) as a user's own model. Rows are
 * folders, columns are checks (exporter-checks.ts); quantized precisions and salience are added
 * as further columns by their owners.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { sharedPath } from '../helpers/shared.ts';
import { EXPORTERS_REL, exporterFolders, checkLayerCount, checkActivationValues, checkVariantSites, paddedVsAlone, checkRun, loglikBatchedVsAlone } from './exporter-checks.ts';

const folders = sharedPath(EXPORTERS_REL, 'exporter matrix') ? exporterFolders()! : [];

test('the matrix covers every exporter folder', () => {
  if (!folders.length) return;
  assert.ok(folders.length >= 10, `${folders.length} folders`);
});

for (const dir of folders) {
  const name = path.basename(dir);

  test(`${name}: layer count from its config; one MLP activation per layer, captured = act(input) to 1e-5`, async () => {
    const sites = await checkLayerCount(dir);
    const worst = await checkActivationValues(dir, sites);
    const variants = await checkVariantSites(dir, sites);
    console.log(`${name}: ${sites.length} layers, ${sites[0].act} (${sites.map((s) => s.width).join('/')} wide), max rel error ${worst.toExponential(2)}${variants.length ? `; same sites in ${variants.join(', ')}` : ''}`);
  });

  test(`${name}: padded batch = each example alone (last logits and activations < 1e-4)`, async () => {
    const r = await paddedVsAlone(dir);
    console.log(`${name}: ${r.side} padding, max |diff| logits ${r.logits.toExponential(2)}, activations ${r.acts.toExponential(2)}`);
    assert.ok(r.logits < 1e-4, `logits ${r.logits}`);
    assert.ok(r.acts < 1e-4, `activations ${r.acts}`);
    if (r.side === 'right') {
      // Why the side is chosen per model: the same batch left-padded is measurably wrong here.
      const wrong = await paddedVsAlone(dir, 'left');
      console.log(`${name}: left padding would give max |diff| logits ${wrong.logits.toExponential(2)}`);
      assert.ok(wrong.logits > 1e-3, `left padding differs (${wrong.logits})`);
      // loglik reads every continuation position, so it checks the right-padded offsets too.
      const ll = await loglikBatchedVsAlone(dir);
      console.log(`${name}: loglik batched vs alone max |Δ confidence| ${ll.maxDiff.toExponential(2)}`);
      assert.ok(ll.same && ll.maxDiff < 1e-4, `loglik ${ll.maxDiff}`);
    }
  });

  test(`${name}: fp32 pipeline (predictions, neurons, dead, correlation, calibration) has finite outputs`, async () => {
    const s = await checkRun(dir);
    console.log(`${name}: fp32 accuracy ${s.precisions.fp32.accuracy.toFixed(3)}, ece ${s.precisions.fp32.ece.toFixed(3)}`);
  });
}

test.run();
