/**
 * Quantization on every model folder of ../shared/models/exporters/ (real exporters' graphs):
 *  - the matrix: each folder at its own precision and nf4, llm-int8, q4, int8 (plus its prebuilt
 *    variants as precisions: model_q4, model_bnb4, model_int8, model_uint8, model_fp16) through one
 *    pipeline with predictions, neurons, dead, correlation, calibration and agreement; outputs finite,
 *    every quantized precision differs from fp32 (mean KL(fp32‖q) reported), and the record says
 *    100% of decoder linear-weight parameters are quantized;
 *  - genai-llama-int4 against genai-llama-fp32 through a per-precision model path; re-quantizing
 *    the int4 build is refused in one line;
 *  - tjs-* (and the genai int4 build): every quantized node of every prebuilt variant: its recorded
 *    settings equal its attributes, and the weight ONNX Runtime applies (the node alone on an
 *    identity input) equals quantlens's reference dequantization of the stored codes.
 * Every row must run: no folder is excused (the forward-path work of issue 10 §1–2 is done).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { resolvePrecisionModel } from '../../pipelines/precisions.ts';
import { openModelFolder } from '../../sources/model/folder.ts';
import { quantizeModel, quantSessionConfig, type QuantVariant } from '../../onnx/quantize/index.ts';
import { readGraphQuantization } from '../../onnx/quantize/graph-settings.ts';
import { dequantizeBnb4, dequantizeInteger, dequantizeNBits } from '../../onnx/quantize/dequantize.ts';
import { constantTensor, readOnnxModel, readTensorBytes, type NodeInfo, type OnnxModel, type TensorInfo } from '../../onnx/model-reader.ts';
import { GraphBuilder, tensor, type TypedData } from '../../onnx/builder.ts';
import { DTYPE, type DTypeName } from '../../onnx/dtypes.ts';
import { QuantlensError } from '../../core/errors.ts';
import { tempDir } from '../helpers/temp.ts';

const QUANTIZED: QuantVariant[] = ['nf4', 'llm-int8', 'q4', 'int8'];
const PREBUILT = ['model_q4', 'model_bnb4', 'model_int8', 'model_uint8', 'model_fp16'];

function pipelineYaml(model: string, precisions: string[], out: string, data: string): string {
  return [
    `model: ${model}`,
    `precisions: [${precisions.join(', ')}]`,
    'dataset:',
    `  path: ${data}`,
    '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
    '  limit: 6',
    'batch: {max_examples: 3}',
    'measure: [predictions, neurons, dead, correlation, calibration, agreement]',
    'calibration: {bootstrap: 20}',
    `output: ${out}`,
  ].join('\n');
}

/** dead, correlation, calibration and agreement: rows for every precision, every value finite (empty calibration bins excepted). */
async function checkOtherMeasures(label: string, out: string, precisions: number, summary: Record<string, any>): Promise<void> {
  const q = async (sql: string) => (await duckdbQuery(sql))[0];
  const dead = await q(`select count(distinct precision)::int p, count(*) filter (where dead_count < 0 or dead_count > total or total <= 0)::int bad from '${out}/dead.parquet'`);
  const corr = await q(`select count(distinct precision)::int p, count(*) filter (where pairs < 0)::int bad, sum(pairs)::double total from '${out}/correlation.parquet'`);
  const calib = await q(`select count(distinct precision)::int p, count(*) filter (where count > 0 and not (isfinite(accuracy) and isfinite(mean_confidence)))::int bad from '${out}/calibration.parquet'`);
  const agr = await q(`select count(distinct precision)::int p, count(*) filter (where value is null or not isfinite(value))::int bad from '${out}/agreement.parquet'`);
  assert.equal([dead.p, corr.p, calib.p], [precisions, precisions, precisions], `${label}: dead, correlation, calibration for every precision`);
  assert.is(agr.p, precisions - 1, `${label}: agreement for every precision against the reference`);
  assert.equal([dead.bad, corr.bad, calib.bad, agr.bad], [0, 0, 0, 0], `${label}: dead / correlation / calibration / agreement values in range and finite`);
  assert.ok(Number(corr.total) > 0, `${label}: correlation pairs counted`);
  for (const [p, v] of Object.entries<any>(summary.precisions)) for (const k of ['accuracy', 'mean_confidence', 'ace', 'ece']) assert.ok(Number.isFinite(v[k]), `${label} ${p}.${k} finite`);
}

/** Run one pipeline and check the quantization claims on its outputs; returns one report line. */
async function checkRun(label: string, yaml: string, out: string, quantized: string[]): Promise<string> {
  const cfg = parsePipeline(yaml, path.join(out, 'p.yaml'));
  const report = label === 'hf-gpt2'; // one report is enough to check the fraction is shown
  await runPipeline(cfg, { quiet: true, report, cacheDir: path.join(out, '..', 'cache'), log: () => undefined });
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  if (report) assert.match(readFileSync(path.join(out, 'report.html'), 'utf8'), /Precision nf4: linear weights quantized<\/th><td[^>]*>100\.0% of decoder linear-weight parameters/);
  const conf = await duckdbQuery(`select precision, count(*) n, count(*) filter (where isfinite(confidence)) finite from '${out}/predictions.parquet' group by precision`);
  assert.is(conf.length, quantized.length + 1, `${label}: predictions for every precision`);
  for (const r of conf) assert.is(Number(r.finite), Number(r.n), `${label} ${r.precision}: finite confidences`);
  const neurons = await duckdbQuery(`select count(*) filter (where not isfinite(mean) or not isfinite(variance)) bad from '${out}/neurons.parquet'`);
  assert.is(Number(neurons[0].bad), 0, `${label}: finite neuron moments`);
  await checkOtherMeasures(label, out, quantized.length + 1, summary);
  const kl = await duckdbQuery(`select precision, value from '${out}/agreement.parquet' where metric = 'kl_mean' and layer is null`);
  const parts: string[] = [];
  for (const p of quantized) {
    const k = Number(kl.find((r) => r.precision === p)?.value);
    assert.ok(Number.isFinite(k) && k > 0, `${label} ${p}: differs from the reference (mean KL ${k})`);
    const rec = summary.precisions[p].quantization.record;
    assert.ok(rec, `${label} ${p}: quantization record in summary.json`);
    if (p !== 'model_fp16') {
      assert.is(rec.decoder_fraction_quantized, 1, `${label} ${p}: 100% of decoder linear weights quantized`);
      // Outputs record a model's own files relative to the output folder and no cache path, so a
      // variant quantized into the cache is found the way the run found it (a cache hit now).
      const recorded = summary.precisions[p].model_path as string | undefined;
      const file = recorded ? path.resolve(out, recorded) : (await resolvePrecisionModel(await openModelFolder(cfg.model), p, cfg, 'fp32', path.join(out, '..', 'cache'))).path;
      const q = readOnnxModel(file);
      assert.is(readGraphQuantization(q).record.decoder_fraction_quantized, 1, `${label} ${p}: the file run holds no decoder float weight`);
      q.source.close();
    }
    parts.push(`${p} KL ${k.toExponential(2)} (${(100 * rec.decoder_fraction_quantized).toFixed(0)}% decoder params)`);
  }
  const meta = await duckdbQuery(`select decode(value) v from parquet_kv_metadata('${out}/dead.parquet') where decode(key) = 'quantlens.precisions'`);
  const recorded = JSON.parse(String(meta[0].v));
  for (const p of quantized) assert.ok(recorded.find((r: any) => r.precision === p)?.settings?.record, `${label} ${p}: record in Parquet metadata`);
  return `${label}: ${parts.join(', ')}`;
}

test('matrix: every exporter folder at its own precision, nf4, llm-int8, q4, int8 and its prebuilt variants', async () => {
  const root = sharedPath('models/exporters', 'quantized exporters matrix');
  const data = sharedPath('datasets/boolq.csv', 'quantized exporters matrix');
  if (!root || !data) return;
  const tmp = tempDir('ql-qexp-');
  const folders = readdirSync(root).filter((d) => existsSync(path.join(root, d, 'tokenizer.json'))).sort();
  assert.ok(folders.length >= 10, `${folders.length} folders`);
  for (const name of folders) {
    if (name === 'genai-llama-int4') continue; // already quantized: compared with its float sibling below
    const dir = path.join(root, name);
    const folder = await openModelFolder(dir);
    const prebuilt = PREBUILT.filter((p) => folder.variants[p.slice('model_'.length)]);
    const quantized = [...QUANTIZED, ...prebuilt];
    const out = path.join(tmp, name);
    console.log(`  ${await checkRun(name, pipelineYaml(dir, ['fp32', ...quantized], out, data), out, quantized)}`);
  }
});

test('genai-llama-int4 vs genai-llama-fp32 through a per-precision model path; re-quantizing int4 is refused in one line', async () => {
  const fp32 = sharedPath('models/exporters/genai-llama-fp32', 'genai int4 vs fp32');
  const int4 = sharedPath('models/exporters/genai-llama-int4', 'genai int4 vs fp32');
  const data = sharedPath('datasets/boolq.csv', 'genai int4 vs fp32');
  if (!fp32 || !int4 || !data) return;
  const tmp = tempDir('ql-genai-');
  const f = await openModelFolder(int4);
  try {
    await quantizeModel(f.onnxPath, 'nf4', path.join(tmp, 'x.onnx'));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.match((e as Error).message, /already quantized .*MatMulNBits.*re-quantizing quantized weights is refused/);
    assert.not.match((e as Error).message, /\n/);
    assert.not.ok(existsSync(path.join(tmp, 'x.onnx')));
  }
  const out = path.join(tmp, 'run');
  const yaml = pipelineYaml(fp32, ['fp32', `{name: int4, model: ${int4}}`], out, data);
  console.log(`  ${await checkRun('genai int4 vs fp32', yaml, out, ['int4'])}`);
  const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.equal(s.precisions.int4.quantization.formats, [{ op: 'com.microsoft.MatMulNBits', bits: 4, block_size: 32, zero_points: 'none (symmetric)', accuracy_level: 4, g_idx: false }]);
});

test('a pipeline asking for nf4 of genai-llama-int4 (through the CLI): one line, exit non-zero, nothing written', () => {
  const int4 = sharedPath('models/exporters/genai-llama-int4', 'genai int4 re-quantization refused');
  const data = sharedPath('datasets/boolq.csv', 'genai int4 re-quantization refused');
  if (!int4 || !data) return;
  const dir = tempDir('ql-requant-');
  writeFileSync(path.join(dir, 'p.yaml'), `model: ${int4}\nprecisions: [fp32, nf4]\ndataset:\n  path: ${data}\n  limit: 2\nmeasure: [predictions]\noutput: out\n`);
  const bin = path.resolve(import.meta.dirname, '..', '..', 'pipelines', 'bin.mjs');
  const r = spawnSync(process.execPath, [bin, 'run', path.join(dir, 'p.yaml'), '--quiet'], { encoding: 'utf8', env: { ...process.env, CI: 'true', QUANTLENS_CACHE: path.join(dir, 'cache') } });
  assert.ok(r.status !== 0 && r.status !== null, `exit ${r.status}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim());
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0], /genai-llama-int4\/model\.onnx: weights are already quantized \(\d+ nodes, e\.g\. .*MatMulNBits 4-bit\); re-quantizing quantized weights is refused/);
  assert.not.ok(existsSync(path.join(dir, 'out')), 'nothing written');
  assert.equal(readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
});

const TYPED: Record<number, (b: Uint8Array) => TypedData> = {
  [DTYPE.float]: (b) => new Float32Array(b.slice().buffer),
  [DTYPE.uint8]: (b) => b.slice(),
  [DTYPE.int8]: (b) => new Int8Array(b.slice().buffer),
};
const NAME: Record<number, DTypeName> = { [DTYPE.float]: 'float', [DTYPE.uint8]: 'uint8', [DTYPE.int8]: 'int8' };

function copyInit(g: GraphBuilder, m: OnnxModel, t: TensorInfo, name: string): TypedData {
  const data = TYPED[t.dataType](readTensorBytes(m, t));
  g.initializer(name, tensor(NAME[t.dataType], t.dims, data));
  return data;
}

const intAttr = (n: NodeInfo, k: string, d: number) => (n.attributes[k]?.type === 'int' ? (n.attributes[k].value as number) : d);

/** Adds node `n` alone (names prefixed by `p`, input p/X, output p/Y); returns [K, N] and the reference dequantization of its stored codes. */
function addOneNode(g: GraphBuilder, m: OnnxModel, n: NodeInfo, consumers: Map<string, NodeInfo[]>, p: string): { K: number; N: number; ref: Float32Array } {
  g.input(`${p}/X`, 'float', ['m', 'k']);
  if (n.opType === 'MatMulNBits' || n.opType === 'MatMulBnb4') {
    const K = intAttr(n, 'K', 0);
    const N = intAttr(n, 'N', 0);
    const ins = n.inputs.slice(1).map((name, i) => (name ? copyInit(g, m, constantTensor(m, name)!, `${p}/in${i}`) : null));
    const attrs = Object.fromEntries(Object.entries(n.attributes).filter(([, a]) => a.type === 'int').map(([k, a]) => [k, a.value as number]));
    g.node(n.opType, [`${p}/X`, ...ins.map((x, i) => (x ? `${p}/in${i}` : ''))], [`${p}/Y`], attrs, { domain: 'com.microsoft', name: `${p}/node` });
    const ref =
      n.opType === 'MatMulNBits'
        ? dequantizeNBits(ins[0] as Uint8Array, ins[1] as Float32Array, (ins[2] as Uint8Array) ?? null, K, N, intAttr(n, 'bits', 4), intAttr(n, 'block_size', 0))
        : dequantizeBnb4(ins[0] as Uint8Array, ins[1] as Float32Array, K, N, intAttr(n, 'block_size', 0), intAttr(n, 'quant_type', 1) === 1 ? 'nf4' : 'fp4');
    return { K, N, ref };
  }
  const w = constantTensor(m, n.inputs[1])!;
  const [K, N] = w.dims;
  const q = copyInit(g, m, w, `${p}/Wq`) as Int8Array | Uint8Array;
  const zp = copyInit(g, m, constantTensor(m, n.inputs[3])!, `${p}/Wzp`) as Int8Array | Uint8Array;
  // The weight scale: Cast → Mul(·, a_scale × w_scale) after MatMulInteger, w_scale a constant.
  const cast = consumers.get(n.outputs[0])!.find((c) => c.opType === 'Cast')!;
  const mul = consumers.get(cast.outputs[0])!.find((c) => c.opType === 'Mul')!;
  const scaleMul = m.nodes.find((x) => x.outputs[0] === mul.inputs.find((i) => i !== cast.outputs[0]))!;
  const ws = copyInit(g, m, constantTensor(m, scaleMul.inputs.find((i) => constantTensor(m, i))!)!, `${p}/Ws`) as Float32Array;
  g.node('DynamicQuantizeLinear', [`${p}/X`], [`${p}/xq`, `${p}/xs`, `${p}/xzp`]);
  g.node('MatMulInteger', [`${p}/xq`, `${p}/Wq`, `${p}/xzp`, `${p}/Wzp`], [`${p}/yi`]);
  g.node('Cast', [`${p}/yi`], [`${p}/yf`], { to: DTYPE.float });
  g.node('Mul', [`${p}/xs`, `${p}/Ws`], [`${p}/s`]);
  g.node('Mul', [`${p}/yf`, `${p}/s`], [`${p}/Y`]);
  return { K, N, ref: dequantizeInteger(q, zp, ws, N) };
}

/** Every node alone on an identity input, all in one session: effective weights [K, N] and reference dequantizations. */
async function effectiveWeights(m: OnnxModel, nodes: NodeInfo[], consumers: Map<string, NodeInfo[]>, dir: string): Promise<{ eff: Float32Array; ref: Float32Array }[]> {
  const g = new GraphBuilder('one_node_each');
  const parts = nodes.map((n, i) => {
    const r = addOneNode(g, m, n, consumers, `n${i}`);
    g.output(`n${i}/Y`, 'float', ['m', r.N]);
    return r;
  });
  const file = path.join(dir, 'nodes.onnx');
  writeFileSync(file, g.toModel({ opset: 17, domains: { 'com.microsoft': 1 } }));
  const s = await ort.InferenceSession.create(file, { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions);
  const feeds: Record<string, ort.Tensor> = {};
  parts.forEach(({ K }, i) => {
    const x = new Float32Array(K * K);
    for (let k = 0; k < K; k++) x[k * K + k] = 1;
    feeds[`n${i}/X`] = new ort.Tensor('float32', x, [K, K]);
  });
  const r = await s.run(feeds);
  await s.release();
  return parts.map((p, i) => ({ eff: r[`n${i}/Y`].data as Float32Array, ref: p.ref }));
}

/** One string per distinct format, from the node attributes themselves. */
function directFormat(m: OnnxModel, n: NodeInfo): string {
  if (n.opType === 'MatMulNBits') return `NBits bits=${intAttr(n, 'bits', 4)} block=${intAttr(n, 'block_size', -1)} zp=${!!n.inputs[3]} acc=${intAttr(n, 'accuracy_level', 0)}`;
  if (n.opType === 'MatMulBnb4') return `Bnb4 type=${intAttr(n, 'quant_type', -1)} block=${intAttr(n, 'block_size', -1)}`;
  return `Integer w=${constantTensor(m, n.inputs[1])!.dataType}`;
}

/** The same string from a recorded format. */
function recordedFormat(f: any): string {
  if (f.op === 'com.microsoft.MatMulNBits') return `NBits bits=${f.bits} block=${f.block_size} zp=${!String(f.zero_points).startsWith('none')} acc=${f.accuracy_level}`;
  if (f.op === 'com.microsoft.MatMulBnb4') return `Bnb4 type=${f.quant_type === 'nf4' ? 1 : f.quant_type === 'fp4' ? 0 : -1} block=${f.block_size}`;
  return `Integer w=${DTYPE[f.weight_type as DTypeName]}`;
}

test('tjs-*, genai int4: prebuilt variants: recorded settings = node attributes; effective weights = reference dequantization of the stored codes', async () => {
  const root = sharedPath('models/exporters', 'prebuilt effective weights');
  if (!root) return;
  const tmp = tempDir('ql-eff-');
  const files = ['tjs-llama', 'tjs-phi'].flatMap((d) => ['q4', 'bnb4', 'int8', 'uint8'].map((v) => path.join(root, d, 'onnx', `model_${v}.onnx`)));
  files.push(path.join(root, 'genai-llama-int4', 'model.onnx'));
  for (const file of files) {
    const m = readOnnxModel(file);
    const consumers = new Map<string, NodeInfo[]>();
    for (const n of m.nodes) for (const i of n.inputs) (consumers.get(i) ?? consumers.set(i, []).get(i)!).push(n);
    const recorded = readGraphQuantization(m);
    const nodes = m.nodes.filter((n) => ['MatMulNBits', 'MatMulBnb4', 'MatMulInteger'].includes(n.opType) && constantTensor(m, n.inputs[1]));
    assert.ok(nodes.length >= 21, `${file}: ${nodes.length} quantized nodes`);
    const direct = [...new Set(nodes.map((n) => directFormat(m, n)))].sort();
    assert.equal([...new Set(recorded.formats.map(recordedFormat))].sort(), direct, `${file}: recorded formats`);
    assert.is(recorded.record.decoder_fraction_quantized, 1, `${file}: every decoder linear weight quantized`);
    let worst = 0;
    for (const { eff, ref } of await effectiveWeights(m, nodes, consumers, tmp)) {
      let scale = 0;
      for (const v of ref) scale = Math.max(scale, Math.abs(v));
      assert.ok(scale > 0, 'non-zero weight');
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(eff[i] - ref[i]) / scale);
    }
    m.source.close();
    // MatMulNBits / MatMulBnb4 on an identity are exact; dynamic int8 rescales by the activation scale (255 · 1/255).
    assert.ok(worst < 1e-6, `${path.relative(root, file)}: max relative |W_eff − W_ref| ${worst}`);
    console.log(`  ${path.relative(root, file)}: ${nodes.length} nodes, ${direct.join('; ')}, max rel |W_eff − W_ref| ${worst.toExponential(1)}`);
  }
});

test.run();
