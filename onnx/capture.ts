/**
 * Finds the paper's hooked tensor in an ONNX graph: the MLP activation-function output (SiLU or
 * GELU) of each decoder layer, before the product with the up projection. Width = d_ff.
 *
 * Exporters name things differently, so the search uses names first and structure second:
 *  - Optimum / torch.onnx / the project's builder: `/model/layers.{i}/mlp/act_fn/Mul` (SiLU as
 *    Sigmoid+Mul) or `.../act_fn/...Gelu...`;
 *  - onnxruntime-genai builder: the same names with `/output_0` outputs;
 *  - onnxruntime.transformers (GPT-2): fused `FastGelu` / `BiasGelu` / `Gelu` nodes without layer
 *    names, numbered by their order in the graph;
 *  - otherwise any SiLU pattern Mul(x, Sigmoid(x)) whose output feeds a Mul or MatMul.
 * `quantlens inspect` prints what was found so users can name tensors explicitly when this fails.
 */
import { QuantlensError } from '../core/errors.ts';
import type { NodeInfo, OnnxModel } from './model-reader.ts';
import { constantTensor } from './model-reader.ts';

export interface ActivationSite {
  layer: number;
  tensor: string;
  /** The node producing the tensor, and how it was recognised. */
  node: string;
  opType: string;
  how: 'act_fn name' | 'gelu op' | 'silu pattern' | 'explicit';
  width: number | null;
}

export type LayerSpec = 'first' | 'middle' | 'last' | number | string;

const LAYER_IN_NAME = /(?:layers|layer|h|blocks|block|decoder\.layers)[._/](\d+)(?:[./]|$)/;

export function layerIndexOf(name: string): number | null {
  const m = LAYER_IN_NAME.exec(name);
  return m ? Number(m[1]) : null;
}

const GELU_OPS = new Set(['Gelu', 'FastGelu', 'BiasGelu', 'QuickGelu', 'GeluNew']);

/** Width of a tensor produced by `node`, from the 2-D constant weight of the MatMul/Gemm that made its input. */
function widthOf(m: OnnxModel, producers: Map<string, NodeInfo>, node: NodeInfo): number | null {
  const seen = new Set<string>();
  const stack = [...node.inputs];
  while (stack.length) {
    const name = stack.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    const p = producers.get(name);
    if (!p) continue;
    if (p.opType === 'MatMul' || p.opType === 'Gemm' || p.opType === 'MatMulNBits' || p.opType === 'MatMulBnb4') {
      if (p.opType === 'MatMulNBits' || p.opType === 'MatMulBnb4') {
        const n = p.attributes.N;
        return n?.type === 'int' ? n.value : null;
      }
      const w = constantTensor(m, p.inputs[1]);
      if (w && w.dims.length === 2) return p.opType === 'Gemm' && p.attributes.transB?.value === 1 ? w.dims[0] : w.dims[1];
      return null;
    }
    if (GELU_OPS.has(p.opType) || p.opType === 'Sigmoid' || p.opType === 'Mul' || p.opType === 'Add' || p.opType === 'Cast') {
      for (const i of p.inputs) stack.push(i);
    }
  }
  // Fused GELU with bias: the bias length is the width.
  if (node.inputs[1]) {
    const b = constantTensor(m, node.inputs[1]);
    if (b && b.dims.length === 1) return b.dims[0];
  }
  return null;
}

/** Every MLP activation site the heuristics recognise, ordered by layer. */
export function findActivationSites(m: OnnxModel): ActivationSite[] {
  const producers = new Map<string, NodeInfo>();
  for (const n of m.nodes) for (const o of n.outputs) producers.set(o, n);
  const sites: ActivationSite[] = [];
  const claimed = new Set<number>();

  const add = (layer: number, node: NodeInfo, how: ActivationSite['how']) => {
    if (claimed.has(layer)) return;
    claimed.add(layer);
    sites.push({ layer, tensor: node.outputs[0], node: node.name, opType: node.opType, how, width: widthOf(m, producers, node) });
  };

  // 1. Named act_fn outputs. For SiLU exported as Sigmoid + Mul, the Mul is the output.
  for (const n of m.nodes) {
    if (!/\/mlp\/act(_fn)?\//.test(n.name) && !/\/mlp\/act(_fn)?$/.test(n.name)) continue;
    const layer = layerIndexOf(n.name);
    if (layer === null) continue;
    const isSilu = n.opType === 'Mul' && n.inputs.some((i) => producers.get(i)?.opType === 'Sigmoid');
    if (isSilu || GELU_OPS.has(n.opType) || n.opType === 'Relu') add(layer, n, 'act_fn name');
  }
  // GELU written out as x * 0.5 * (1 + erf(...)) under act_fn: take the last node in the act_fn scope.
  const actScopes = new Map<number, NodeInfo>();
  for (const n of m.nodes) {
    if (!/\/mlp\/act(_fn)?\//.test(n.name)) continue;
    const layer = layerIndexOf(n.name);
    if (layer !== null && !claimed.has(layer)) actScopes.set(layer, n);
  }
  for (const [layer, n] of actScopes) add(layer, n, 'act_fn name');

  // 2. Fused GELU ops (onnxruntime.transformers exports): numbered in graph order.
  if (sites.length === 0) {
    const gelus = m.nodes.filter((n) => GELU_OPS.has(n.opType));
    gelus.forEach((n, k) => add(layerIndexOf(n.name) ?? k, n, 'gelu op'));
  }

  // 3. Structural SiLU: Mul(x, Sigmoid(x)) whose output feeds another Mul (SwiGLU) or a MatMul.
  if (sites.length === 0) {
    const consumers = new Map<string, NodeInfo[]>();
    for (const n of m.nodes) for (const i of n.inputs) consumers.set(i, [...(consumers.get(i) ?? []), n]);
    const silus = m.nodes.filter((n) => {
      if (n.opType !== 'Mul') return false;
      const sig = n.inputs.map((i) => producers.get(i)).find((p) => p?.opType === 'Sigmoid');
      if (!sig || !n.inputs.includes(sig.inputs[0])) return false;
      return (consumers.get(n.outputs[0]) ?? []).some((c) => c.opType === 'Mul' || c.opType === 'MatMul');
    });
    silus.forEach((n, k) => add(layerIndexOf(n.name) ?? k, n, 'silu pattern'));
  }
  return sites.sort((a, b) => a.layer - b.layer);
}

/** The number of decoder layers, from config.json when given, else from the graph's layer names. */
export function countDecoderLayers(m: OnnxModel, config?: Record<string, unknown> | null): number {
  const fromConfig = Number(config?.num_hidden_layers ?? config?.n_layer ?? config?.num_layers ?? NaN);
  if (Number.isInteger(fromConfig) && fromConfig > 0) return fromConfig;
  // Activation sites are the most reliable count: some exporters name the final norm
  // `/model/layers.{L}/...`, one past the last decoder layer.
  const sites = findActivationSites(m);
  if (sites.length) return sites[sites.length - 1].layer + 1;
  let max = -1;
  for (const n of m.nodes) {
    const l = layerIndexOf(n.name);
    if (l !== null) max = Math.max(max, l);
  }
  return max + 1;
}

/**
 * Resolve the pipeline's `layers:` entries to activation tensors.
 * first = 0, middle = floor(L/2), last = L−1 (for 5 layers: 0, 2, 4, as in the paper's setup).
 */
export function resolveLayers(m: OnnxModel, specs: LayerSpec[], config?: Record<string, unknown> | null, where = 'layers'): ActivationSite[] {
  const sites = findActivationSites(m);
  const nLayers = countDecoderLayers(m, config);
  const out: ActivationSite[] = [];
  const outputs = new Map<string, NodeInfo>();
  for (const n of m.nodes) for (const o of n.outputs) outputs.set(o, n);
  specs.forEach((spec, k) => {
    const at = `${where}[${k}]`;
    let index: number | null = null;
    if (spec === 'first') index = 0;
    else if (spec === 'middle') index = Math.floor(nLayers / 2);
    else if (spec === 'last') index = nLayers - 1;
    else if (typeof spec === 'number') {
      if (!Number.isInteger(spec) || spec < -nLayers || spec >= nLayers)
        throw new QuantlensError('MODEL', `layer ${spec} does not exist: the model has ${nLayers} decoder layers (0–${nLayers - 1})`, at);
      index = spec < 0 ? nLayers + spec : spec;
    } else {
      const node = outputs.get(spec);
      if (!node) throw new QuantlensError('MODEL', `no tensor named "${spec}" in the model (run \`quantlens inspect\` to list candidates)`, at);
      const known = sites.find((s) => s.tensor === spec);
      out.push(known ? { ...known, how: 'explicit' } : { layer: layerIndexOf(spec) ?? -1, tensor: spec, node: node.name, opType: node.opType, how: 'explicit', width: null });
      return;
    }
    const site = sites.find((s) => s.layer === index);
    if (!site)
      throw new QuantlensError(
        'MODEL',
        `cannot find the MLP activation of layer ${index} (${sites.length} recognised: ${sites.map((s) => s.layer).join(', ') || 'none'}); name the tensor explicitly, see \`quantlens inspect\``,
        at,
      );
    out.push(site);
  });
  // The same tensor twice would double-count every statistic.
  const seen = new Set<string>();
  return out.filter((s) => (seen.has(s.tensor) ? false : (seen.add(s.tensor), true)));
}
