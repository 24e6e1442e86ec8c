/**
 * Attribution graphs that reference the model's weights instead of copying them
 * (onnx/backward/weight-references.ts):
 *  - stories260K (inline weights): LIG through the run's path (graph referencing model.onnx's own
 *    bytes, session given the model's folder) equals LIG on the model held in memory (no file, so
 *    the graph embeds everything) exactly; the referenced graph holds no weight;
 *  - tiny-random-llama-fp16 (fp16, external data): the graph keeping its references and the graph
 *    with every weight embedded and loaded from bytes alone give identical objectives and gradients;
 *  - stories260K quantized (nf4, q4, llm-int8): the attribution graph holds no float copy of the
 *    quantized weights — neither in its protobuf nor in ONNX Runtime's optimized graph.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { readOnnxModel, type OnnxModel } from '../../../onnx/model-reader.ts';
import { buildAttributionGraph, gradName, OBJECTIVE_OUTPUT, originalName, overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import { findQuantizedUnits } from '../../../onnx/backward/quantized-patterns.ts';
import { attributeExample, createAttributionSession } from '../../../operators/attribution/lig.ts';
import { buildFeeds, planInputs } from '../../../onnx/feeds.ts';
import { createSession, defaultSessionSettings } from '../../../onnx/session.ts';
import { quantizeModel, quantSessionConfig, type QuantVariant } from '../../../onnx/quantize/index.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { tempDir } from '../../helpers/temp.ts';

const STORIES_T = (l: number) => `/model/layers.${l}/mlp/act_fn/Mul_output_0`;
const ids = Int32Array.from([1, 17, 42, 99, 5, 230, 64, 12]);

/** Initializers of at least 1 KiB and Constants of at least 4 KiB held in the graph's protobuf (not external references). */
function embeddedWeights(graph: Uint8Array): string[] {
  const m = readOnnxModel(graph);
  const out = [...m.initializers.values()].filter((t) => t.location.length >= 1024 && t.location.kind !== 'external').map((t) => t.name);
  for (const n of m.nodes) {
    const v = n.attributes.value;
    if (n.opType === 'Constant' && v?.type === 'tensor' && v.value.location.length >= 4096) out.push(`Constant ${n.name}`);
  }
  m.source.close();
  return out;
}

test('stories260K: LIG with referenced weights == LIG on the model in memory, exactly; the graph holds no weight', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'attribution with referenced weights');
  if (!dir) return;
  const file = path.join(dir, 'model.onnx');
  const referenced = await buildAttributionGraph(file, { layerTensors: [STORIES_T(2)], weights: 'referenced' });
  assert.equal(embeddedWeights(referenced), []);
  // The weights stay where they are: the references cover ≥ 95 % of the model's initializer bytes.
  const model = readOnnxModel(file);
  const weightBytes = [...model.initializers.values()].reduce((a, t) => a + t.location.length, 0);
  model.source.close();
  const refs = [...readOnnxModel(referenced, { modelDir: dir }).initializers.values()].filter((t) => t.location.kind === 'external');
  assert.ok(refs.every((t) => t.location.file === file), 'references point into model.onnx itself');
  const referencedBytes = refs.reduce((a, t) => a + t.location.length, 0);
  assert.ok(referencedBytes >= 0.95 * weightBytes, `${referencedBytes} of ${weightBytes} weight bytes referenced`);

  const onDisk = await createAttributionSession(file, STORIES_T(2));
  const inMemory = await createAttributionSession(readOnnxModel(new Uint8Array(readFileSync(file))), STORIES_T(2));
  const opts = { steps: 8, onWarning: () => {} };
  const a = await attributeExample(onDisk, { ids }, onDisk.tensor, opts);
  const b = await attributeExample(inMemory, { ids }, inMemory.tensor, opts);
  await onDisk.session.release();
  await inMemory.session.release();
  assert.ok(a.attributions.some((v) => v !== 0));
  assert.equal(Array.from(a.attributions), Array.from(b.attributions));
  assert.is(a.F_input, b.F_input);
  assert.is(a.F_baseline, b.F_baseline);
  assert.is(a.target, b.target);
});

async function fp16Outputs(graph: Uint8Array, externalDataDir: string | undefined, T: string) {
  const s = await createSession(graph, defaultSessionSettings(), { externalDataDir, where: 'test' });
  const all = s.inputMetadata as readonly { name: string; type?: string }[];
  const ours = new Set([overrideName(T), TARGET_INPUT]);
  const plan = planInputs({ inputMetadata: all.filter((x) => !ours.has(x.name)) } as unknown as Pick<ort.InferenceSession, 'inputMetadata'>);
  const feeds = buildFeeds(plan, { seqLen: 5, lengths: Int32Array.from([5, 3]), ids: [Int32Array.from([1, 45, 301, 77, 9]), Int32Array.from([1, 88, 402])] }, 0);
  const target = new ort.Tensor('int64', BigInt64Array.from([7n, 300n]), [2]);
  const W = 64;
  const zeros = new ort.Tensor('float16', new Uint16Array(2 * 5 * W), [2, 5, W]);
  const a = (await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(T)]: zeros }))[originalName(T)];
  const out = await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(T)]: a });
  await s.release();
  return { objective: Array.from(out[OBJECTIVE_OUTPUT].data as Uint16Array), grad: Array.from(out[gradName(T)].data as Uint16Array) };
}

function mlpActivation(m: OnnxModel, layer: number): string {
  // SiLU gate·up: the Mul reading a Sigmoid's output, in the given layer.
  const sig = m.nodes.filter((n) => n.opType === 'Sigmoid' && n.name.includes(`layers.${layer}/`));
  const mul = m.nodes.find((n) => n.opType === 'Mul' && sig.some((s) => n.inputs.includes(s.outputs[0])));
  const up = m.nodes.find((n) => n.opType === 'Mul' && mul && n.inputs.includes(mul.outputs[0]));
  if (!up) throw new Error('no MLP activation found');
  return up.outputs[0];
}

test('tiny-random-llama-fp16 (external data): referenced graph + its folder == embedded graph from bytes alone, bit for bit', async () => {
  const dir = sharedPath('models/tiny-random-llama-fp16', 'fp16 attribution with external data');
  if (!dir) return;
  const file = path.join(dir, 'model.onnx');
  const m = readOnnxModel(file);
  const T = mlpActivation(m, 1);
  m.source.close();
  const referenced = await buildAttributionGraph(file, { layerTensors: [T], weights: 'referenced' });
  const embedded = await buildAttributionGraph(file, { layerTensors: [T], weights: 'embedded' });
  assert.equal(embeddedWeights(referenced), []);
  assert.ok(embedded.length > 2_000_000 && referenced.length < 100_000, `${embedded.length} / ${referenced.length} bytes`);
  const a = await fp16Outputs(referenced, dir, T);
  const b = await fp16Outputs(embedded, undefined, T);
  assert.ok(a.grad.some((v) => (v & 0x7fff) !== 0), 'non-zero gradient');
  assert.equal(a.objective, b.objective);
  assert.equal(a.grad, b.grad);
});

/** Float tensors (initializers or Constants) with at least `n` elements in an ONNX file. */
function floatTensorsAtLeast(m: OnnxModel, n: number): string[] {
  const size = (d: number[]) => d.reduce((a, x) => a * x, 1);
  const out = [...m.initializers.values()].filter((t) => (t.dataType === 1 || t.dataType === 10) && size(t.dims) >= n).map((t) => t.name);
  for (const node of m.nodes) {
    const v = node.attributes.value;
    if (node.opType === 'Constant' && v?.type === 'tensor' && (v.value.dataType === 1 || v.value.dataType === 10) && size(v.value.dims) >= n) out.push(node.name);
  }
  return out;
}

for (const variant of ['nf4', 'q4', 'llm-int8'] as QuantVariant[]) {
  test(`stories260K ${variant}: the attribution graph holds no float copy of a quantized weight (protobuf and ORT's optimized graph)`, async () => {
    const dir = sharedPath('models/stories260K-onnx', `${variant} attribution graph inventory`);
    if (!dir) return;
    const tmp = tempDir('ql-weightrefs-');
    const file = path.join(tmp, `model_${variant}.onnx`);
    await quantizeModel(path.join(dir, 'model.onnx'), variant, file, {});
    const q = readOnnxModel(file);
    const units = findQuantizedUnits(q);
    const unitSize = Math.min(...units.map((u) => u.K * u.N));
    // The model's own float tensors of that size (embedding, lm_head) are not copies of quantized weights.
    const own = new Set(floatTensorsAtLeast(q, unitSize));
    q.source.close();
    assert.ok(units.length >= 7, `${units.length} quantized units`);
    const graph = await buildAttributionGraph(file, { layerTensors: [STORIES_T(0)], weights: 'referenced' });
    assert.equal(embeddedWeights(graph), []);
    const g = readOnnxModel(graph);
    assert.equal(floatTensorsAtLeast(g, unitSize).filter((t) => !own.has(t)), [], 'no float tensor of a unit’s size in the graph');
    g.source.close();
    const optimized = path.join(tmp, 'optimized.onnx');
    const withOpt = await ort.InferenceSession.create(graph, {
      extra: { ...quantSessionConfig(), 'session.model_external_initializers_file_folder_path': tmp },
      optimizedModelFilePath: optimized,
    } as ort.InferenceSession.SessionOptions);
    await withOpt.release();
    const o = readOnnxModel(optimized);
    const folded = floatTensorsAtLeast(o, unitSize).filter((t) => !own.has(t));
    o.source.close();
    assert.equal(folded, [], `ORT folded float tensors: ${folded.slice(0, 3).join(', ')}`);
  });
}

test('stories260K fp32: ORT\'s optimized attribution graph holds only the model\'s own weights (no folded Transpose(W) copy)', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'fp32 attribution graph inventory');
  if (!dir) return;
  const file = path.join(dir, 'model.onnx');
  const m = readOnnxModel(file);
  const own = new Set(m.initializers.keys());
  m.source.close();
  const graph = await buildAttributionGraph(file, { layerTensors: [STORIES_T(0)], weights: 'referenced' });
  const optimized = path.join(tempDir('ql-weightrefs-fp32-'), 'optimized.onnx');
  const s = await ort.InferenceSession.create(graph, { extra: { 'session.model_external_initializers_file_folder_path': dir }, optimizedModelFilePath: optimized } as ort.InferenceSession.SessionOptions);
  await s.release();
  const o = readOnnxModel(optimized);
  const copies = floatTensorsAtLeast(o, 1024).filter((t) => !own.has(t));
  o.source.close();
  assert.equal(copies, [], `float tensors ORT made: ${copies.slice(0, 3).join(', ')}`);
});

test.run();
