/**
 * Finds the paper's hooked tensor in an ONNX graph: the MLP activation-function output of each
 * decoder layer (SiLU, GELU in any of its written forms, ReLU…), before the product with the up
 * projection where there is a gate. Width = d_ff.
 *
 * The search is structural (mlp-sites.ts: the tensor feeding each down projection, recognised by
 * what its subgraph computes). Layers are numbered along the residual stream (graph order); a
 * `layers.N` / `h.N` / `blocks.N` name is used instead only when every site has one and they agree
 * with that order and with the config's layer count. `quantlens inspect` prints, per layer, the
 * tensor chosen and why, so users can name tensors explicitly when this fails.
 */
import { QuantlensError } from '../core/errors.ts';
import type { NodeInfo, OnnxModel } from './model-reader.ts';
import type { ActivationKind } from './activation-functions.ts';
import { findMlpSites, unrecognisedActivationHint, type MlpSite } from './mlp-sites.ts';

export interface ActivationSite {
  layer: number;
  tensor: string;
  /** The node producing the tensor, and how it was recognised. */
  node: string;
  opType: string;
  how: 'structure' | 'explicit';
  width: number | null;
  /** The activation function recognised, and the tensor it reads (gate / fc1 output). */
  act?: ActivationKind;
  input?: string;
  /** A fused op's bias: captured = act(input + bias). */
  bias?: string;
  /** One line: what was recognised and how the layer was numbered. */
  why?: string;
  /** How `layer` was found: a name agreeing with the residual order, or the position along it. */
  layerBy?: 'name' | 'order';
  /** The tensor is [batch·seq, width] (a Gemm computed it); runs reshape it to [batch, seq, width]. */
  flat?: boolean;
  /** The graph output a run fetches for this site when it differs from `tensor` (the reshaped copy). */
  capture?: string;
}

export type LayerSpec = 'first' | 'middle' | 'last' | number | string;

/** `layers.3`, `h.3`, `blocks.3`, `layer_3` between separators: never `Tanh_135` or `Mul_3`. */
const LAYER_IN_NAME = /(?:^|[/.:_])(?:layers|layer|h|blocks|block)[._](\d+)(?=$|[/.:_])/;

export function layerIndexOf(name: string): number | null {
  const m = LAYER_IN_NAME.exec(name);
  return m ? Number(m[1]) : null;
}

/** The decoder layer count a config declares: HF config.json keys, or genai_config.json's model.decoder. */
export function configLayerCount(config?: Record<string, any> | null): number | null {
  const decoder = config?.model?.decoder ?? config?.decoder;
  const v = Number(config?.num_hidden_layers ?? config?.n_layer ?? config?.num_layers ?? decoder?.num_hidden_layers ?? NaN);
  return Number.isInteger(v) && v > 0 ? v : null;
}

/** Layer numbers for sites in graph order: names when they agree with that order and the count, else the order. */
function numberLayers(sites: MlpSite[], count: number | null): { layers: number[]; by: string; layerBy: 'name' | 'order' } {
  const named = sites.map((s) => layerIndexOf(s.node.name) ?? layerIndexOf(s.down.name));
  const increasing = named.every((l, i) => l !== null && (i === 0 || l > named[i - 1]!));
  const fits = count === null || named.every((l) => l! < count);
  if (sites.length && increasing && fits) return { layers: named as number[], by: 'layer from its name, in residual order', layerBy: 'name' };
  return { layers: sites.map((_, i) => i), by: 'layer = position along the residual stream', layerBy: 'order' };
}

function describe(s: MlpSite, by: string): string {
  const gate = s.up ? `, gated by × ${s.up}` : '';
  return `${s.act.kind} (${s.act.ops}) of ${s.act.input}${gate}, feeds ${s.down.opType} ${s.down.name}; ${by}`;
}

/** Every MLP activation site found, ordered by layer. `config` (HF or genai) cross-checks the numbering. */
export function findActivationSites(m: OnnxModel, config?: Record<string, any> | null): ActivationSite[] {
  const found = findMlpSites(m);
  const { layers, by, layerBy } = numberLayers(found, configLayerCount(config));
  return found.map((s, i) => ({
    layer: layers[i],
    tensor: s.tensor,
    node: s.node.name,
    opType: s.node.opType,
    how: 'structure' as const,
    width: s.width,
    act: s.act.kind,
    input: s.act.input,
    ...(s.act.bias ? { bias: s.act.bias } : {}),
    ...(s.flat ? { flat: true } : {}),
    why: describe(s, by),
    layerBy,
  }));
}

/** The number of decoder layers: from the config when it says, else the MLP sites found in the graph. */
export function countDecoderLayers(m: OnnxModel, config?: Record<string, any> | null): number {
  const fromConfig = configLayerCount(config);
  if (fromConfig !== null) return fromConfig;
  const sites = findActivationSites(m);
  return sites.length ? sites[sites.length - 1].layer + 1 : 0;
}

/** first = 0, middle = floor(L/2), last = L−1 (for 5 layers: 0, 2, 4, as in the paper's setup). */
export function namedLayerIndex(spec: 'first' | 'middle' | 'last', nLayers: number): number {
  return spec === 'first' ? 0 : spec === 'middle' ? Math.floor(nLayers / 2) : nLayers - 1;
}

/** Resolve the pipeline's `layers:` entries to activation tensors (named layers by namedLayerIndex). */
export function resolveLayers(m: OnnxModel, specs: LayerSpec[], config?: Record<string, any> | null, where = 'layers'): ActivationSite[] {
  const sites = findActivationSites(m, config);
  const nLayers = countDecoderLayers(m, config);
  const out: ActivationSite[] = [];
  const outputs = new Map<string, NodeInfo>();
  for (const n of m.nodes) for (const o of n.outputs) outputs.set(o, n);
  specs.forEach((spec, k) => {
    const at = `${where}[${k}]`;
    let index: number | null = null;
    if (spec === 'first' || spec === 'middle' || spec === 'last') index = namedLayerIndex(spec, nLayers);
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
    // Numbered by position only: with a site missing or extra, position k is not layer k.
    if (sites.length !== nLayers && sites.some((s) => s.layerBy === 'order'))
      throw new QuantlensError(
        'MODEL',
        `${sites.length} MLP activations found for ${nLayers} decoder layers and their names do not number them, so layer ${index} is ambiguous; name the tensors explicitly, see \`quantlens inspect\``,
        at,
      );
    const site = sites.find((s) => s.layer === index);
    if (!site) {
      const hint = sites.length ? null : unrecognisedActivationHint(m);
      throw new QuantlensError(
        'MODEL',
        `cannot find the MLP activation of layer ${index} (${sites.length} recognised: ${sites.map((s) => s.layer).join(', ') || 'none'}${hint ? `; ${hint}` : ''}); name the tensor explicitly, see \`quantlens inspect\``,
        at,
      );
    }
    out.push(site);
  });
  // The same tensor twice would double-count every statistic.
  const seen = new Set<string>();
  return out.filter((s) => (seen.has(s.tensor) ? false : (seen.add(s.tensor), true)));
}
