/**
 * Ŵᵀ dequantized INSIDE a graph (dequantize-graph.ts, through each unit's emitWeightT) against the
 * reference Ŵ recomputed in JS (dequantize.ts, itself checked against ORT on the identity in
 * dequantize.test.ts): bit for bit, for every recognised format, with K not a multiple of the
 * block size and matrices large enough (≥ 1024 elements) to go through the runtime gate.
 * Then ONNX Runtime's own optimized graph (optimizedModelFilePath) is read back: it must hold no
 * float tensor of K·N elements, i.e. constant folding did not turn the dequantization into a
 * resident float copy of the weight.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { quantizeModel, quantSessionConfig, type QuantOptions, type QuantVariant } from '../../../onnx/quantize/index.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { findQuantizedUnits } from '../../../onnx/backward/quantized-patterns.ts';
import { GradEmitter, TARGET_INPUT } from '../../../onnx/backward/emitter.ts';
import { ortTypeOf } from '../../../onnx/backward/probe.ts';
import { appendGraphFragment } from '../../../onnx/builder.ts';
import { transposeMatrix } from '../../../onnx/matrix.ts';
import { gaussian, tmpDir, writeMatMulModel } from '../quantize/fixtures.ts';

const K = 100;
const N = 72;
const DY = 'dy';

const cases: { variant: QuantVariant; opts: QuantOptions; kind: string }[] = [
  { variant: 'nf4', opts: {}, kind: 'MatMulBnb4' },
  { variant: 'nf4', opts: { blockSize: 16, doubleQuant: false }, kind: 'MatMulBnb4' },
  { variant: 'fp4', opts: { blockSize: 32 }, kind: 'MatMulBnb4' },
  { variant: 'q4', opts: { blockSize: 16 }, kind: 'MatMulNBits' },
  { variant: 'q4', opts: { blockSize: 32, symmetric: false }, kind: 'MatMulNBits' },
  { variant: 'int8', opts: { blockSize: 32 }, kind: 'MatMulNBits' },
  { variant: 'int8', opts: { blockSize: 16, symmetric: false }, kind: 'MatMulNBits' },
  { variant: 'llm-int8', opts: {}, kind: 'llm-int8' },
  { variant: 'dynamic-int8', opts: {}, kind: 'dynamic-int8' },
];

/** The quantized model with the unit's Ŵᵀ emitted behind the gate as an extra output; ORT's optimized graph saved. */
async function inGraph(variant: QuantVariant, opts: QuantOptions, w: Float32Array) {
  const dir = tmpDir('ql-dqgraph-');
  const src = writeMatMulModel(dir, K, N, w);
  const file = path.join(dir, 'q.onnx');
  await quantizeModel(src, variant, file, { ...opts, includeLmHead: true });
  const m = readOnnxModel(file);
  try {
    const [u] = findQuantizedUnits(m);
    const lookup = (name: string) => {
      if (name === DY) return { type: 'float32', shape: [2, N] };
      const t = m.initializers.get(name);
      return t ? { type: ortTypeOf(t.dataType), shape: t.dims } : undefined;
    };
    const e = new GradEmitter(m.opsets.find((o) => o.domain === '')!.version, lookup, undefined, (name) => m.initializers.has(name));
    const wT = u.emitWeightT(e, (name) => e.gate(name, DY));
    const gated = e.nodes.filter((n) => n.opType === 'Slice' && m.initializers.has(n.inputs[0])).length;
    const bytes = appendGraphFragment(new Uint8Array(readFileSync(file)), {
      nodes: e.nodes,
      inputs: [
        { name: DY, type: 'float', dims: ['m', N] },
        { name: TARGET_INPUT, type: 'int64', dims: ['b'] },
      ],
      outputs: [{ name: wT, type: 'float', dims: [N, K] }],
    });
    const optimized = path.join(dir, 'optimized.onnx');
    const s = await ort.InferenceSession.create(bytes, { extra: quantSessionConfig(), optimizedModelFilePath: optimized } as ort.InferenceSession.SessionOptions);
    const out = await s.run({ X: new ort.Tensor('float32', new Float32Array(2 * K), [2, K]), [DY]: new ort.Tensor('float32', new Float32Array(2 * N), [2, N]), [TARGET_INPUT]: new ort.Tensor('int64', BigInt64Array.from([3n]), [1]) }, [wT]);
    await s.release();
    return { unit: u, reference: transposeMatrix(u.weight(), K, N), got: out[wT].data as Float32Array, gated, optimized };
  } finally {
    m.source.close();
  }
}

function floatTensorSizes(file: string): number[] {
  const m = readOnnxModel(file);
  try {
    const sizes = [...m.initializers.values()].filter((t) => t.dataType === 1).map((t) => t.dims.reduce((a, d) => a * d, 1));
    for (const n of m.nodes) {
      const v = n.attributes.value;
      if (n.opType === 'Constant' && v?.type === 'tensor' && v.value.dataType === 1) sizes.push(v.value.dims.reduce((a, d) => a * d, 1));
    }
    return sizes;
  } finally {
    m.source.close();
  }
}

for (const c of cases) {
  test(`${c.variant} ${JSON.stringify(c.opts)}: in-graph Ŵᵀ == dequantize.ts's Ŵᵀ bit for bit; no folded float copy`, async () => {
    const w = gaussian(K * N, 31, 0.2);
    for (let i = 0; i < N; i++) w[i] += 0.1; // skewed so zero points matter
    const r = await inGraph(c.variant, c.opts, w);
    assert.is(r.unit.kind, c.kind);
    assert.ok(r.gated >= 1, 'the packed weight is read behind the gate');
    assert.is(r.got.length, K * N);
    let diff = 0;
    for (let i = 0; i < K * N; i++) if (!Object.is(r.got[i], r.reference[i])) diff++;
    assert.is(diff, 0, `${diff} values differ`);
    const sizes = floatTensorSizes(r.optimized);
    assert.not.ok(sizes.some((n) => n >= K * N), `ORT's optimized graph holds a float tensor of ${Math.max(...sizes)} elements`);
  });
}

test.run();
