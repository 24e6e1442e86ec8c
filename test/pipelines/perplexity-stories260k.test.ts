/**
 * measure: perplexity on the real model: 20 BoolQ prompts, fp32 vs nf4, batched and left-padded
 * by the pipeline, against a brute force that runs every sequence alone (no padding) through
 * ONNX Runtime and takes a full float64 softmax at every position. perplexity.parquet (read with
 * DuckDB) and summary.json must equal it; percentiles equal a sort of the brute-force values.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { resolvePrecisionModel } from '../../pipelines/precisions.ts';
import { openModelFolder } from '../../sources/model/folder.ts';
import { loadTokenizer } from '../../sources/tokenizer.ts';
import { openDataset } from '../../sources/dataset/open.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';

const TEMPLATE = 'Respond with True or False only.\n{prompt}\nAnswer:';
const N = 20;

async function logitsAlone(s: ort.InferenceSession, ids: Int32Array): Promise<{ L: Float32Array; V: number }> {
  const n = ids.length;
  const r = await s.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (x) => BigInt(x)), [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
  });
  return { L: r.logits.data as Float32Array, V: r.logits.dims[2] };
}

function logSoftmax64(L: Float32Array, off: number, V: number): Float64Array {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, L[off + v]);
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(L[off + v] - m);
  const out = new Float64Array(V);
  for (let v = 0; v < V; v++) out[v] = L[off + v] - m - Math.log(z);
  return out;
}

const argmax = (a: Float64Array) => a.indexOf(Math.max(...a));

function sortedPercentile(values: number[], f: number): number {
  const s = [...values].sort((a, b) => a - b);
  const pos = f * (s.length - 1);
  const lo = Math.floor(pos);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (pos - lo);
}

test('stories260K fp32 vs nf4: perplexity and KLD over all positions equal a float64 brute force', async () => {
  const model = sharedPath('models/stories260K-onnx', 'perplexity brute force');
  const data = sharedPath('datasets/boolq.csv', 'perplexity brute force');
  if (!model || !data) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-ppl-'));
  const cfg = parsePipeline(
    `model: ${model}\nprecisions: [fp32, nf4]\ndataset:\n  path: ${data}\n  prompt: ${JSON.stringify(TEMPLATE)}\n  limit: ${N}\nbatch: {max_examples: 8}\nmeasure: [predictions, perplexity]\noutput: out\n`,
    path.join(dir, 'p.yaml'),
  );
  const { summary } = await runPipeline(cfg, { quiet: true, report: false, cacheDir: path.join(dir, 'cache'), log: () => undefined });

  const tok = await loadTokenizer(model);
  // Outputs record the model's own file relative to the output folder and no cache path: the nf4
  // file is found the way the run found it (a cache hit now).
  const folder = await openModelFolder(cfg.model);
  const files = await Promise.all(['fp32', 'nf4'].map(async (p) => (summary.precisions[p].model_path ? path.resolve(cfg.output, summary.precisions[p].model_path) : (await resolvePrecisionModel(folder, p, cfg, 'fp32', path.join(dir, 'cache'))).path)));
  const sessions = await Promise.all(files.map((f) => ort.InferenceSession.create(readFileSync(f))));
  const nllRef: number[] = [], nllQ: number[] = [], kld: number[] = [], dp: number[] = [];
  let same = 0;
  for await (const rec of openDataset({ path: data, limit: N })) {
    const ids = tok.encode(TEMPLATE.replace('{prompt}', rec.fields.prompt));
    const [r, q] = await Promise.all(sessions.map((s) => logitsAlone(s, ids)));
    for (let j = 1; j < ids.length; j++) {
      const lr = logSoftmax64(r.L, (j - 1) * r.V, r.V);
      const lq = logSoftmax64(q.L, (j - 1) * q.V, q.V);
      nllRef.push(-lr[ids[j]]);
      nllQ.push(-lq[ids[j]]);
      let kl = 0;
      for (let v = 0; v < r.V; v++) kl += Math.exp(lr[v]) * (lr[v] - lq[v]);
      kld.push(kl);
      dp.push(Math.exp(lq[ids[j]]) - Math.exp(lr[ids[j]]));
      if (argmax(lr) === argmax(lq)) same++;
    }
  }
  const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
  const n = kld.length;
  const rows = await duckdbQuery(`select precision, metric, value, uncertainty, positions from '${dir}/out/perplexity.parquet'`);
  const get = (p: string, m: string) => {
    const row = rows.find((x) => x.precision === p && x.metric === m);
    assert.ok(row, `perplexity.parquet has ${p} ${m}`);
    assert.is(Number(row!.positions), n, `${p} ${m}: positions`);
    return row!.value as number;
  };
  // Batched, left-padded ORT results differ from one-at-a-time runs by float32 rounding only.
  const close = (got: number, want: number, what: string, rel: number, abs = 0) =>
    assert.ok(Math.abs(got - want) <= rel * Math.abs(want) + abs, `${what}: ${got} vs brute force ${want}`);
  close(get('fp32', 'ppl'), Math.exp(mean(nllRef)), 'PPL(base)', 1e-5);
  close(get('nf4', 'ppl'), Math.exp(mean(nllQ)), 'PPL(Q)', 1e-5);
  close(get('nf4', 'ppl_ratio'), Math.exp(mean(nllQ) - mean(nllRef)), 'PPL ratio', 1e-5);
  close(get('nf4', 'kld_mean'), mean(kld), 'KLD mean', 1e-3, 1e-8);
  for (const [m, f] of [['kld_max', 1], ['kld_p99', 0.99], ['kld_p95', 0.95], ['kld_p90', 0.9], ['kld_median', 0.5], ['kld_p10', 0.1], ['kld_p1', 0.01], ['kld_min', 0]] as const)
    close(get('nf4', m), sortedPercentile(kld, f), m, 1e-3, 1e-8);
  close(get('nf4', 'delta_p_mean'), mean(dp), 'Δp mean', 1e-3, 1e-7);
  close(get('nf4', 'delta_p_rms'), Math.sqrt(mean(dp.map((x) => x * x))), 'RMS Δp', 1e-3, 1e-7);
  for (const [m, f] of [['delta_p_max', 1], ['delta_p_p95', 0.95], ['delta_p_median', 0.5], ['delta_p_p5', 0.05], ['delta_p_min', 0]] as const)
    close(get('nf4', m), sortedPercentile(dp, f), m, 1e-3, 1e-7);
  close(get('nf4', 'same_top_p'), same / n, 'same top p', 0, 1.5 / n); // a near-tie may flip one position
  assert.ok(mean(kld) > 1e-6, `nf4 differs from fp32 (mean KLD ${mean(kld)})`);
  // summary.json carries the same headline numbers.
  assert.is(summary.perplexity.reference, 'fp32');
  assert.is(summary.perplexity.precisions.nf4.kld_mean, get('nf4', 'kld_mean'));
  assert.is(summary.perplexity.precisions.fp32.ppl, get('fp32', 'ppl'));
  console.log(`${n} positions: PPL fp32 ${Math.exp(mean(nllRef)).toFixed(4)}, nf4 ${Math.exp(mean(nllQ)).toFixed(4)}, mean KLD ${mean(kld).toExponential(3)}, same top ${(same / n).toFixed(4)}`);
});

test.run();
