/** `quantlens inspect <model-folder>`: what quantlens sees in a model, to name tensors by hand. */
import path from 'node:path';
import { openModelFolder } from '../sources/model/folder.ts';
import { readOnnxModel } from '../onnx/model-reader.ts';
import { configLayerCount, countDecoderLayers, findActivationSites } from '../onnx/capture.ts';
import { dtypeName } from '../onnx/dtypes.ts';
import { paddingSideFor } from '../onnx/attention-layout.ts';
import { configActivation } from '../onnx/activation-functions.ts';

export interface InspectReport {
  folder: string;
  onnx: string;
  variants: Record<string, string>;
  externalData: string[];
  opsets: { domain: string; version: number }[];
  inputs: { name: string; type: string; dims: (number | string | null)[] }[];
  outputs: { name: string; type: string; dims: (number | string | null)[] }[];
  decoderLayers: number;
  /** The activation config.json declares (hidden_act / activation_function), when it names one we know. */
  configActivation: string | null;
  /** Where decoderLayers came from. */
  layersFrom: 'config.json' | 'genai_config.json' | 'graph';
  activations: { layer: number; tensor: string; opType: string; how: string; width: number | null; act?: string; input?: string; why?: string }[];
  /** Padding side from the attention implementation (the pipeline confirms it with a probe batch). */
  padding: { side: string; why: string };
  opTypes: Record<string, number>;
  quantizableMatMuls: number;
}

export async function inspectModel(dir: string): Promise<InspectReport> {
  const folder = await openModelFolder(dir, dir);
  const m = readOnnxModel(folder.onnxPath);
  const layerConfig = folder.config ?? folder.genai;
  try {
    const opTypes: Record<string, number> = {};
    for (const n of m.nodes) opTypes[(n.domain ? n.domain + ':' : '') + n.opType] = (opTypes[(n.domain ? n.domain + ':' : '') + n.opType] ?? 0) + 1;
    const vi = (v: { name: string; elemType: number | null; dims?: (number | string | null)[] }) => ({ name: v.name, type: v.elemType === null ? '?' : dtypeName(v.elemType), dims: v.dims ?? [] });
    return {
      folder: folder.dir,
      onnx: path.relative(folder.dir, folder.onnxPath),
      variants: Object.fromEntries(Object.entries(folder.variants).map(([k, v]) => [k, path.relative(folder.dir, v)])),
      externalData: folder.externalData.map((f) => path.relative(folder.dir, f)),
      opsets: m.opsets,
      inputs: m.inputs.map(vi),
      outputs: m.outputs.map(vi),
      decoderLayers: countDecoderLayers(m, layerConfig),
      layersFrom: configLayerCount(folder.config) !== null ? 'config.json' : configLayerCount(folder.genai) !== null ? 'genai_config.json' : 'graph',
      activations: findActivationSites(m, layerConfig).map(({ layer, tensor, opType, how, width, act, input, why }) => ({ layer, tensor, opType, how, width, act, input, why })),
      padding: paddingSideFor(m),
      configActivation: configActivation(folder.config),
      opTypes,
      quantizableMatMuls: m.nodes.filter((n) => n.opType === 'MatMul' && m.initializers.get(n.inputs[1])?.dims.length === 2).length,
    };
  } finally {
    m.source.close();
  }
}

export function formatInspect(r: InspectReport): string {
  const dims = (d: (number | string | null)[]) => `[${d.map((x) => x ?? '?').join(', ')}]`;
  const lines = [
    `model folder   ${r.folder}`,
    `onnx           ${r.onnx}${r.externalData.length ? ` (+ external data: ${r.externalData.join(', ')})` : ''}`,
    `variants       ${Object.entries(r.variants).map(([k, v]) => `${k}=${v}`).join(', ') || '-'}`,
    `opsets         ${r.opsets.map((o) => `${o.domain || 'ai.onnx'} ${o.version}`).join(', ')}`,
    `inputs`,
    ...r.inputs.map((i) => `  ${i.name}  ${i.type} ${dims(i.dims)}`),
    `outputs`,
    ...r.outputs.map((o) => `  ${o.name}  ${o.type} ${dims(o.dims)}`),
    `padding        ${r.padding.side} (${r.padding.why})`,
    `decoder layers ${r.decoderLayers} (from ${r.layersFrom})`,
    `MLP activations (the paper's hooked tensor; use these names in layers: when needed)`,
    ...(r.activations.length
      ? r.activations.flatMap((a) => [`  layer ${a.layer}  ${a.tensor}  (${a.opType}, width ${a.width ?? '?'})`, `    why: ${a.why ?? a.how}`])
      : ['  none recognised: no linear layer reads SiLU/GELU/ReLU of a linear output; name tensors explicitly in layers:']),
    ...(r.activations.length && r.activations.length !== r.decoderLayers ? [`  warning: ${r.activations.length} MLP activations found for ${r.decoderLayers} decoder layers`] : []),
    ...(r.configActivation && r.activations.some((a) => a.act !== r.configActivation)
      ? [`  warning: the config declares ${r.configActivation}, the graph computes ${[...new Set(r.activations.map((a) => a.act))].join(', ')}`]
      : []),
    `quantizable MatMuls (2-D constant weight) ${r.quantizableMatMuls}`,
    `ops            ${Object.entries(r.opTypes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(' ')}`,
  ];
  return lines.join('\n');
}
