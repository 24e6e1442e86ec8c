/**
 * The paper's hooked tensor, found by graph structure: in each decoder layer, the tensor that
 * feeds the MLP's down projection. Without a gate (GPT-2, Phi, OPT) that is act(fc1(x)); with a
 * gate (Llama, Qwen, Gemma) the down projection reads act(gate(x)) × up(x), and the hooked tensor
 * is the activation output before that product. Names are used only to number layers, and only
 * when they agree with the graph (see numberLayers).
 */
import type { NodeInfo, OnnxModel } from './model-reader.ts';
import { indexGraph, isConstant, constantDims, type GraphIndex } from './graph-index.ts';
import { recogniseActivation, type RecognisedActivation } from './activation-subgraph.ts';

export interface MlpSite {
  tensor: string;
  node: NodeInfo;
  act: RecognisedActivation;
  /** The linear op reading the hooked tensor (through the gate product when gated). */
  down: NodeInfo;
  /** The up projection's output when gated. */
  up?: string;
  width: number | null;
  /** The tensor is [batch·seq, d_ff]: a Gemm (always 2-D) computed it from flattened tokens. */
  flat: boolean;
}

/** Ops that compute x·W (or a quantized form of it). */
const LINEAR = new Set(['MatMul', 'Gemm', 'FusedMatMul', 'MatMulInteger', 'MatMulNBits', 'MatMulBnb4', 'MatMulIntegerToFloat', 'DynamicQuantizeMatMul']);
/** Their weight is always a constant (packed codes). */
const PACKED = new Set(['MatMulNBits', 'MatMulBnb4', 'MatMulIntegerToFloat', 'DynamicQuantizeMatMul']);
/** Ops that move or re-type a tensor without computing on it. */
const PASS = new Set(['Reshape', 'Cast', 'Squeeze', 'Unsqueeze', 'Identity', 'Flatten', 'DynamicQuantizeLinear']);
const WEIGHT_PASS = new Set(['Transpose', 'Cast', 'DequantizeLinear', 'Reshape', 'Identity', 'Squeeze', 'Unsqueeze']);

function weightLike(g: GraphIndex, name: string, depth = 4): boolean {
  if (isConstant(g, name)) return true;
  const p = g.producer.get(name);
  return !!p && depth > 0 && WEIGHT_PASS.has(p.opType) && weightLike(g, p.inputs[0], depth - 1);
}

/** A linear layer: a MatMul-like op whose B is a (possibly transposed / dequantized) constant. */
export function isLinearNode(g: GraphIndex, n: NodeInfo | undefined): boolean {
  if (!n || !LINEAR.has(n.opType)) return false;
  return PACKED.has(n.opType) || (!!n.inputs[1] && weightLike(g, n.inputs[1]));
}

/** True when `t` is a linear layer's output, possibly plus a bias, reshaped or rescaled (dynamic int8). */
function fromLinear(g: GraphIndex, t: string, depth = 4): boolean {
  const p = g.producer.get(t);
  if (!p || depth < 0) return false;
  if (isLinearNode(g, p)) return true;
  if (PASS.has(p.opType)) return fromLinear(g, p.inputs[0], depth - 1);
  if (p.opType === 'Add' || p.opType === 'Mul') return p.inputs.some((i) => !isConstant(g, i) && fromLinear(g, i, depth - 1));
  return false;
}

/** Back from a linear op's data input through reshapes / casts / dynamic quantization. */
function dataSource(g: GraphIndex, t: string): string {
  for (let k = 0; k < 4; k++) {
    const p = g.producer.get(t);
    if (!p || !PASS.has(p.opType)) break;
    t = p.inputs[0];
  }
  return t;
}

/** d_ff: the down projection's input width from its weight, else the activation's producer. */
function widthOf(g: GraphIndex, down: NodeInfo, act: RecognisedActivation): number | null {
  const k = down.attributes.K;
  if (k?.type === 'int') return k.value;
  const w = down.inputs[1];
  const dims = constantDims(g, w);
  if (dims && dims.length === 2) return down.opType === 'Gemm' && down.attributes.transB?.value === 1 ? dims[1] : dims[0];
  const t = g.producer.get(w);
  const wd = t?.opType === 'Transpose' ? constantDims(g, t.inputs[0]) : null;
  if (wd && wd.length === 2) return wd[1];
  if (act.bias) return constantDims(g, act.bias)?.[0] ?? null;
  return null;
}

/** Gemm outputs are 2-D; elementwise ops (bias, activation) keep that rank. */
function flatFromGemm(g: GraphIndex, t: string, depth = 4): boolean {
  const p = g.producer.get(t);
  if (!p || depth < 0) return false;
  if (p.opType === 'Gemm') return true;
  if (p.opType === 'Add' || p.opType === 'Mul' || p.opType === 'Cast') return p.inputs.some((i) => !isConstant(g, i) && flatFromGemm(g, i, depth - 1));
  return false;
}

function siteAt(g: GraphIndex, down: NodeInfo): MlpSite | null {
  const t = dataSource(g, down.inputs[0]);
  const direct = recogniseActivation(g, t);
  if (direct && fromLinear(g, direct.input)) return { tensor: t, node: g.producer.get(t)!, act: direct, down, width: widthOf(g, down, direct), flat: flatFromGemm(g, direct.input) };
  const mul = g.producer.get(t);
  if (!mul || mul.opType !== 'Mul' || mul.inputs.length !== 2) return null;
  for (const [a, b] of [mul.inputs, [...mul.inputs].reverse()]) {
    const act = recogniseActivation(g, a);
    if (act && fromLinear(g, act.input) && fromLinear(g, b)) return { tensor: a, node: g.producer.get(a)!, act, down, up: b, width: widthOf(g, down, act), flat: flatFromGemm(g, act.input) };
  }
  return null;
}

/** Every MLP activation site in graph order (= layer order along the residual stream). */
export function findMlpSites(m: OnnxModel): MlpSite[] {
  const g = indexGraph(m);
  const sites: MlpSite[] = [];
  const seen = new Set<string>();
  for (const n of m.nodes) {
    if (!isLinearNode(g, n)) continue;
    const s = siteAt(g, n);
    if (s && !seen.has(s.tensor)) {
      seen.add(s.tensor);
      sites.push(s);
    }
  }
  return sites.sort((a, b) => g.order.get(a.node)! - g.order.get(b.node)!);
}

/** Ops that feed linear layers without being an MLP activation (norms, attention, reshapes). */
const NOT_ACTIVATIONS = new Set([
  'LayerNormalization', 'SimplifiedLayerNormalization', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization', 'RMSNormalization',
  'Gather', 'Concat', 'Transpose', 'Reshape', 'Softmax', 'Add', 'MatMul', 'Gemm', 'GroupQueryAttention', 'MultiHeadAttention', 'Attention',
  'MatMulNBits', 'MatMulBnb4', 'Cast', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity', 'DynamicQuantizeLinear', 'Slice', 'Where',
]);

/**
 * For an error when no site is found: the first node that feeds a linear layer and might have been
 * meant as its activation, as `node "<name>" (<op>) feeds <linear>`; null when there is none.
 */
export function unrecognisedActivationHint(m: OnnxModel): string | null {
  const g = indexGraph(m);
  let mulHint: string | null = null;
  for (const n of m.nodes) {
    if (!isLinearNode(g, n)) continue;
    const p = g.producer.get(dataSource(g, n.inputs[0]));
    if (!p || NOT_ACTIVATIONS.has(p.opType)) continue;
    const hint = `node "${p.name}" (${p.opType}) feeds linear "${n.name}" but computes no known activation`;
    if (p.opType !== 'Mul') return hint;
    mulHint ??= hint;
  }
  return mulHint;
}
