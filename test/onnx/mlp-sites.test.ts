/**
 * MLP activation search by graph structure on synthetic residual stacks: every written form of
 * the activations real exports contain is recognised as the right function (checked by running
 * the graph in ONNX Runtime against a reference written here), gated and ungated MLPs, Gemm and
 * MatMul(x, Transpose(W)) projections; what is not an MLP activation is not taken; layer names
 * count only when they agree with the residual order.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { GraphBuilder, appendGraphOutputs } from '../../onnx/builder.ts';
import { readOnnxModel } from '../../onnx/model-reader.ts';
import { findActivationSites, layerIndexOf, resolveLayers, countDecoderLayers } from '../../onnx/capture.ts';
import { SeededRandom } from '../../core/random.ts';

const D = 4;
const F = 6;

type Act = (g: GraphBuilder, x: string, p: string) => string;
const c = (g: GraphBuilder, v: number) => g.constF32([v], []);

// Activation subgraphs as exporters write them (p = a name prefix for the layer).
const ACTS: Record<string, { build: Act; ref: (x: number) => number; kind: string; domain?: boolean; opset?: number; bias?: boolean }> = {
  'silu Mul(x, Sigmoid(x))': { kind: 'silu', ref: (x) => x / (1 + Math.exp(-x)), build: (g, x) => g.node('Mul', [x, g.node('Sigmoid', [x])[0]])[0] },
  'silu Mul(Sigmoid(x), x)': { kind: 'silu', ref: (x) => x / (1 + Math.exp(-x)), build: (g, x) => g.node('Mul', [g.node('Sigmoid', [x])[0], x])[0] },
  'gelu erf, torch order': {
    kind: 'gelu',
    ref: (x) => 0.5 * x * (1 + erfRef(x / Math.SQRT2)),
    build: (g, x) => g.node('Mul', [g.node('Mul', [x, c(g, 0.5)])[0], g.node('Add', [g.node('Erf', [g.node('Div', [x, c(g, Math.SQRT2)])[0]])[0], c(g, 1)])[0]])[0],
  },
  'gelu erf, constants first': {
    kind: 'gelu',
    ref: (x) => 0.5 * x * (1 + erfRef(x / Math.SQRT2)),
    build: (g, x) => g.node('Mul', [c(g, 0.5), g.node('Mul', [x, g.node('Add', [c(g, 1), g.node('Erf', [g.node('Mul', [c(g, Math.SQRT1_2), x])[0]])[0]])[0]])[0]])[0],
  },
  'gelu_new tanh formula with Pow': {
    kind: 'gelu_tanh',
    ref: geluTanh,
    build: (g, x) => {
      const inner = g.node('Mul', [g.node('Add', [x, g.node('Mul', [g.node('Pow', [x, c(g, 3)])[0], c(g, 0.044715)])[0]])[0], c(g, Math.sqrt(2 / Math.PI))])[0];
      return g.node('Mul', [g.node('Mul', [x, c(g, 0.5)])[0], g.node('Add', [g.node('Tanh', [inner])[0], c(g, 1)])[0]])[0];
    },
  },
  'gelu_pytorch_tanh with x·x·x': {
    kind: 'gelu_tanh',
    ref: geluTanh,
    build: (g, x) => {
      const x3 = g.node('Mul', [x, g.node('Mul', [x, x])[0]])[0];
      const inner = g.node('Mul', [c(g, Math.sqrt(2 / Math.PI)), g.node('Add', [x, g.node('Mul', [c(g, 0.044715), x3])[0]])[0]])[0];
      return g.node('Mul', [c(g, 0.5), g.node('Mul', [x, g.node('Add', [c(g, 1), g.node('Tanh', [inner])[0]])[0]])[0]])[0];
    },
  },
  'Gelu op (opset 20)': { kind: 'gelu', opset: 20, ref: (x) => 0.5 * x * (1 + erfRef(x / Math.SQRT2)), build: (g, x) => g.node('Gelu', [x])[0] },
  'Gelu op approximate=tanh': { kind: 'gelu_tanh', opset: 20, ref: geluTanh, build: (g, x) => g.node('Gelu', [x], 1, { approximate: 'tanh' })[0] },
  'com.microsoft FastGelu with bias': {
    kind: 'gelu_tanh', domain: true, bias: true, ref: geluTanh,
    build: (g, x, p) => g.node('FastGelu', [x, g.constF32(Array.from({ length: F }, (_, i) => 0.1 * i - 0.2), [F], `${p}.bias`)], 1, {}, { domain: 'com.microsoft' })[0],
  },
  'com.microsoft BiasGelu': {
    kind: 'gelu', domain: true, bias: true, ref: (x) => 0.5 * x * (1 + erfRef(x / Math.SQRT2)),
    build: (g, x, p) => g.node('BiasGelu', [x, g.constF32(Array.from({ length: F }, (_, i) => 0.05 * i), [F], `${p}.bias`)], 1, {}, { domain: 'com.microsoft' })[0],
  },
  'com.microsoft QuickGelu': { kind: 'quick_gelu', domain: true, ref: (x) => x / (1 + Math.exp(-1.702 * x)), build: (g, x) => g.node('QuickGelu', [x], 1, { alpha: { kind: 'float', v: 1.702 } }, { domain: 'com.microsoft' })[0] },
  'quick_gelu written out x·Sigmoid(1.702x)': { kind: 'quick_gelu', ref: (x) => x / (1 + Math.exp(-1.702 * x)), build: (g, x) => g.node('Mul', [x, g.node('Sigmoid', [g.node('Mul', [c(g, 1.702), x])[0]])[0]])[0] },
  relu: { kind: 'relu', ref: (x) => Math.max(0, x), build: (g, x) => g.node('Relu', [x])[0] },
};

function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}
function erfRef(x: number): number {
  const n = 2000, h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
  return ((s * h) / 3) * (2 / Math.sqrt(Math.PI));
}

interface StackOpts {
  layers?: number;
  gated?: boolean;
  /** How projections are written: MatMul(x, W), Gemm on flattened rows, MatMul(x, Transpose(W)). */
  linear?: 'matmul' | 'gemm' | 'transpose';
  names?: (layer: number) => string;
}

/** A residual stack x ← x + down(act(fc1(x)) [× up(x)]), returning the model and each layer's act output and input. */
function stack(act: Act, opts: StackOpts = {}): { model: (opset: number, ms: boolean) => Uint8Array; acts: string[]; inputs: string[] } {
  const rnd = new SeededRandom(7);
  const g = new GraphBuilder('stack');
  const w = (r: number, k: number, name: string) => g.constF32(Array.from({ length: r * k }, () => rnd.normal() * 0.7), [r, k], name);
  let x = g.input('x', 'float', ['n', D]);
  const acts: string[] = [];
  const inputs: string[] = [];
  const lin = (inp: string, rows: number, cols: number, name: string) => {
    if (opts.linear === 'gemm') return g.node('Gemm', [inp, w(cols, rows, `${name}.weight`)], 1, { transB: 1 }, { name: `${name}/Gemm` })[0];
    if (opts.linear === 'transpose') return g.node('MatMul', [inp, g.node('Transpose', [w(cols, rows, `${name}.weight`)], 1, { perm: [1, 0] })[0]], 1, {}, { name: `${name}/MatMul` })[0];
    return g.node('MatMul', [inp, w(rows, cols, `${name}.weight`)], 1, {}, { name: `${name}/MatMul` })[0];
  };
  for (let l = 0; l < (opts.layers ?? 3); l++) {
    const p = opts.names ? opts.names(l) : `/blk${l}`;
    const norm = g.node('LayerNormalization', [x, g.constF32(new Array(D).fill(1), [D]), g.constF32(new Array(D).fill(0), [D])], 1, { axis: -1 }, { name: `${p}/norm` })[0];
    const pre = lin(norm, D, F, `${p}/fc1`);
    inputs.push(pre);
    const a = act(g, pre, p);
    acts.push(a);
    const h = opts.gated ? g.node('Mul', [a, lin(norm, D, F, `${p}/up`)], 1, {}, { name: `${p}/gate_mul` })[0] : a;
    x = g.node('Add', [x, lin(h, F, D, `${p}/down`)], 1, {}, { name: `${p}/residual` })[0];
  }
  // A decoy: Sigmoid·Mul inside "attention", read by a MatMul whose B is not a weight.
  const s = g.node('Mul', [x, g.node('Sigmoid', [x])[0]])[0];
  const y = g.node('MatMul', [s, g.node('Transpose', [x], 1, { perm: [1, 0] })[0]])[0];
  g.output(y, 'float', ['n', 'n']);
  return { model: (opset, ms) => g.toModel({ opset, domains: ms ? { 'com.microsoft': 1 } : {} }), acts, inputs };
}

for (const [label, a] of Object.entries(ACTS)) {
  for (const gated of [false, true]) {
    test(`${label}${gated ? ', gated' : ''}: recognised as ${a.kind} at every layer; ORT agrees with the reference`, async () => {
      const s = stack(a.build, { gated, linear: gated ? 'matmul' : 'gemm' });
      const bytes = s.model(a.opset ?? 17, !!a.domain);
      const m = readOnnxModel(bytes);
      const sites = findActivationSites(m);
      assert.equal(sites.map((x) => [x.layer, x.tensor, x.act, x.input, x.width]), s.acts.map((t, l) => [l, t, a.kind, s.inputs[l], F]));
      assert.equal(sites.map((x) => !!x.bias), s.acts.map(() => !!a.bias));
      // What ORT computes at the site equals the reference function of the recorded input (+ bias).
      const session = await ort.InferenceSession.create(appendGraphOutputs(bytes, sites.flatMap((x) => [{ name: x.tensor }, { name: x.input! }])));
      const rnd = new SeededRandom(3);
      const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from({ length: 5 * D }, () => rnd.normal() * 2), [5, D]) });
      for (const site of sites) {
        const bias = site.bias ? Array.from(readBias(m, site.bias)) : null;
        const yv = out[site.tensor].data as Float32Array, xv = out[site.input!].data as Float32Array;
        for (let i = 0; i < yv.length; i++) {
          const ref = a.ref(xv[i] + (bias ? bias[i % F] : 0));
          assert.ok(Math.abs(yv[i] - ref) <= 1e-5 * Math.max(1, Math.abs(ref)), `${site.tensor}[${i}]: ${yv[i]} vs ${ref}`);
        }
      }
      m.source.close();
    });
  }
}

function readBias(m: ReturnType<typeof readOnnxModel>, name: string): Float32Array {
  const t = m.initializers.get(name)!;
  return new Float32Array(m.source.read(t.location.offset, t.location.length).slice().buffer);
}

test('MatMul(x, Transpose(W)) projections: found, width from the transposed weight', () => {
  const s = stack(ACTS['silu Mul(x, Sigmoid(x))'].build, { gated: true, linear: 'transpose' });
  const sites = findActivationSites(readOnnxModel(s.model(17, false)));
  assert.equal(sites.map((x) => [x.tensor, x.width]), s.acts.map((t) => [t, F]));
});

test('not MLP activations: an unknown function, the attention decoy; none recognised gives an error naming a candidate node', () => {
  const s = stack((g, x) => g.node('Softsign', [x], 1, {}, { name: 'odd/Softsign' })[0]);
  const m = readOnnxModel(s.model(17, false));
  assert.equal(findActivationSites(m), []);
  assert.throws(() => resolveLayers(m, ['first']), (e: Error) => /cannot find the MLP activation of layer 0/.test(e.message) && e.message.includes('odd/Softsign') && !e.message.includes('\n'));
});

test('layer numbers: `layers.N`-style names with boundaries, only when they agree with the residual order', () => {
  assert.is(layerIndexOf('/model/layers.10/mlp/act_fn/Mul'), 10);
  assert.is(layerIndexOf('/transformer/h.3/mlp/act/Mul_3'), 3);
  assert.is(layerIndexOf('blocks.7.ff'), 7);
  assert.is(layerIndexOf('/decoder/layer_2/fc1'), 2);
  assert.is(layerIndexOf('Tanh_135'), null);
  assert.is(layerIndexOf('/mlp/act/Mul_3'), null);
  assert.is(layerIndexOf('/model/layers.1x/mlp'), null);
  const act = ACTS['gelu_new tanh formula with Pow'].build;
  // Names agree with the order: used (here offset by 2, as a layer-slice export would be numbered).
  const named = readOnnxModel(stack(act, { names: (l) => `/model/layers.${l + 2}` }).model(17, false));
  assert.equal(findActivationSites(named).map((s) => s.layer), [2, 3, 4]);
  // Names out of residual order, or beyond the config's count: the residual order wins.
  const shuffled = readOnnxModel(stack(act, { names: (l) => `/model/layers.${[5, 1, 9][l]}` }).model(17, false));
  assert.equal(findActivationSites(shuffled).map((s) => s.layer), [0, 1, 2]);
  assert.equal(findActivationSites(named, { num_hidden_layers: 3 }).map((s) => s.layer), [0, 1, 2]);
  // No names at all (Tanh_135-style node numbering only): residual order, count = sites found.
  const anon = readOnnxModel(stack(act, { names: (l) => `Tanh_${135 + l}` }).model(17, false));
  assert.equal(findActivationSites(anon).map((s) => s.layer), [0, 1, 2]);
  assert.is(countDecoderLayers(anon), 3);
  assert.is(countDecoderLayers(anon, { model: { decoder: { num_hidden_layers: 3 } } }), 3);
  assert.equal(resolveLayers(anon, ['middle'], { num_hidden_layers: 3 }).map((s) => s.layer), [1]);
  // Positions cannot stand for layers when the config counts more layers than sites were found.
  assert.throws(() => resolveLayers(anon, ['middle'], { num_hidden_layers: 4 }), /3 MLP activations found for 4 decoder layers .* layer 2 is ambiguous/);
  // With names that agree, a missing site is simply that layer being absent.
  assert.equal(resolveLayers(named, [2, 4], { num_hidden_layers: 6 }).map((s) => s.layer), [2, 4]);
});

test.run();
