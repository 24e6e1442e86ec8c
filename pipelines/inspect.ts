/** `quantlens inspect <model-folder>`: what quantlens sees in a model, to name tensors by hand. */
import path from 'node:path';
import { openModelFolder } from '../sources/model/folder.ts';
import { readOnnxModel } from '../onnx/model-reader.ts';
import { countDecoderLayers, findActivationSites } from '../onnx/capture.ts';
import { dtypeName } from '../onnx/dtypes.ts';

export interface InspectReport {
  folder: string;
  onnx: string;
  variants: Record<string, string>;
  externalData: string[];
  opsets: { domain: string; version: number }[];
  inputs: { name: string; type: string; dims: (number | string | null)[] }[];
  outputs: { name: string; type: string; dims: (number | string | null)[] }[];
  decoderLayers: number;
  activations: { layer: number; tensor: string; opType: string; how: string; width: number | null }[];
  opTypes: Record<string, number>;
  quantizableMatMuls: number;
}

export async function inspectModel(dir: string): Promise<InspectReport> {
  const folder = await openModelFolder(dir, dir);
  const m = readOnnxModel(folder.onnxPath);
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
      decoderLayers: countDecoderLayers(m, folder.config),
      activations: findActivationSites(m).map(({ layer, tensor, opType, how, width }) => ({ layer, tensor, opType, how, width })),
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
    `decoder layers ${r.decoderLayers}`,
    `MLP activations (the paper's hooked tensor; use these names in layers: when needed)`,
    ...(r.activations.length ? r.activations.map((a) => `  layer ${a.layer}  ${a.tensor}  (${a.opType}, ${a.how}, width ${a.width ?? '?'})`) : ['  none recognised: name tensors explicitly in layers:']),
    `quantizable MatMuls (2-D constant weight) ${r.quantizableMatMuls}`,
    `ops            ${Object.entries(r.opTypes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(' ')}`,
  ];
  return lines.join('\n');
}
