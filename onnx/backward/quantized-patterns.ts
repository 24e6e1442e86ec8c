/**
 * Quantized linear layers as units for the reverse sweep. A unit is the set of forward nodes that
 * compute y = x·Ŵ (up to activation rounding) from one float activation x; under the
 * straight-through convention its gradient is dx = dy·Ŵᵀ, and its integer nodes and the float
 * nodes that only feed the rounding (absmax, scales, Round, Where...) are skipped entirely.
 *
 * Recognised units (what onnx/quantize writes, and the same patterns from ORT's own tools):
 *  - com.microsoft MatMulNBits / MatMulBnb4: one node.
 *  - dynamic int8: DynamicQuantizeLinear(x) → MatMulInteger(x_q, Wq const[, x_zp[, w_zp const]])
 *    → Cast(float) → Mul(·, Mul(x_scale, w_scale const)) — recognised by structure; one
 *    DynamicQuantizeLinear may feed several units (ORT shares it between q/k/v).
 *  - llm-int8 (onnx/quantize/llm-int8.ts): recognised by its node names — every node is
 *    `P/llm_int8/<Op>_<k>` and the final Reshape is named `P` — then checked by structure.
 *    Its outlier columns (any token with |x| ≥ threshold) go through the float path with
 *    Ŵ_out = CB·SCB/127, the other columns through the int8 path whose effective weight is
 *    Ŵ_out·(127²·6.200124e-5): the gradient applies that per-column factor, read from the run's
 *    own outlier-column mask.
 * fp16 models have float32 Casts around each unit; those keep their ordinary Cast rule.
 */
import { QuantlensError } from '../../core/errors.ts';
import { constantTensor, readTensorBytes, readTensorFloat32, type NodeInfo, type OnnxModel } from '../model-reader.ts';
import { DTYPE } from '../dtypes.ts';
import { dequantizeBnb4, dequantizeInteger, dequantizeNBits, dequantizeVectorwise } from './dequantize.ts';
import { straightThroughRule } from './rules-quantized.ts';
import { bnb4WeightT, integerWeightT, nbitsWeightT, vectorwiseWeightT } from './dequantize-graph.ts';
import type { GradEmitter } from './emitter.ts';
import type { Gate } from './dequantize-graph.ts';
import type { GradRule } from './rule.ts';
import type { QuantizedUnit } from './quantized-unit.ts';

export type { QuantizedUnit, QuantizedUnitKind } from './quantized-unit.ts';

const where = (n: NodeInfo) => `node ${n.name || n.outputs[0]}`;

function constant(m: OnnxModel, name: string, n: NodeInfo) {
  const t = name ? constantTensor(m, name) : undefined;
  if (!t) throw new QuantlensError('UNSUPPORTED', `${n.opType} (${where(n)}): input "${name}" is not a constant; only constant quantized weights have a straight-through gradient`);
  return t;
}

function floats(m: OnnxModel, name: string, n: NodeInfo): Float32Array {
  return readTensorFloat32(m, constant(m, name, n));
}

function bytes(m: OnnxModel, name: string, n: NodeInfo): { data: Uint8Array; type: number; dims: number[] } {
  const t = constant(m, name, n);
  return { data: readTensorBytes(m, t), type: t.dataType, dims: t.dims };
}

function intAttr(n: NodeInfo, name: string): number {
  const a = n.attributes[name];
  if (a?.type !== 'int') throw new QuantlensError('MODEL', `${n.opType} (${where(n)}) has no integer attribute "${name}"`);
  return a.value;
}

/** A unit that is one com.microsoft node with attributes K and N (MatMulNBits, MatMulBnb4). */
function singleNodeUnit(
  kind: QuantizedUnit['kind'],
  n: NodeInfo,
  weight: (K: number, N: number) => Float32Array,
  emitWeightT: (e: GradEmitter, gate: Gate, K: number, N: number) => string,
): QuantizedUnit {
  const K = intAttr(n, 'K');
  const N = intAttr(n, 'N');
  return { kind, input: n.inputs[0], output: n.outputs[0], K, N, members: [n], shared: [], weight: () => weight(K, N), emitWeightT: (e, gate) => emitWeightT(e, gate, K, N) };
}

function nbitsUnit(m: OnnxModel, n: NodeInfo): QuantizedUnit {
  const check = () => {
    if (n.inputs[4]) throw new QuantlensError('UNSUPPORTED', `MatMulNBits (${where(n)}) has g_idx; its gradient is not supported`);
    if (n.inputs[3] && constant(m, n.inputs[3], n).dataType !== DTYPE.uint8) throw new QuantlensError('UNSUPPORTED', `MatMulNBits (${where(n)}) has non-uint8 zero points; their gradient is not supported`);
    return { bits: intAttr(n, 'bits'), blockSize: intAttr(n, 'block_size') };
  };
  return singleNodeUnit(
    'MatMulNBits',
    n,
    (K, N) => {
      const { bits, blockSize } = check();
      const zp = n.inputs[3] ? bytes(m, n.inputs[3], n).data : undefined;
      return dequantizeNBits(bytes(m, n.inputs[1], n).data, floats(m, n.inputs[2], n), zp, K, N, bits, blockSize);
    },
    (e, gate, K, N) => {
      const { bits, blockSize } = check();
      const scalesHalf = constant(m, n.inputs[2], n).dataType === DTYPE.float16;
      constant(m, n.inputs[1], n);
      return nbitsWeightT(e, gate, { packed: n.inputs[1], scales: n.inputs[2], zeroPoints: n.inputs[3] || undefined, scalesHalf }, K, N, bits, blockSize);
    },
  );
}

function bnb4Unit(m: OnnxModel, n: NodeInfo): QuantizedUnit {
  const type = () => {
    const qt = intAttr(n, 'quant_type');
    if (qt !== 0 && qt !== 1) throw new QuantlensError('UNSUPPORTED', `MatMulBnb4 (${where(n)}) quant_type ${qt} (0 = fp4, 1 = nf4)`);
    return qt === 1 ? 'nf4' : 'fp4';
  };
  return singleNodeUnit(
    'MatMulBnb4',
    n,
    (K, N) => dequantizeBnb4(bytes(m, n.inputs[1], n).data, floats(m, n.inputs[2], n), K, N, intAttr(n, 'block_size'), type()),
    (e, gate, K, N) => {
      const t = type();
      if (constant(m, n.inputs[2], n).dataType !== DTYPE.float) throw new QuantlensError('UNSUPPORTED', `MatMulBnb4 (${where(n)}) has non-float32 absmax; its gradient is not supported`);
      constant(m, n.inputs[1], n);
      return bnb4WeightT(e, gate, n.inputs[1], n.inputs[2], K, N, intAttr(n, 'block_size'), t);
    },
  );
}

function intValues(b: { data: Uint8Array; type: number }): Int8Array | Uint8Array {
  return b.type === DTYPE.int8 ? new Int8Array(b.data.buffer, b.data.byteOffset, b.data.length) : b.data;
}

/** DynamicQuantizeLinear → MatMulInteger → Cast → Mul(·, Mul(x_scale, w_scale)). */
function dynamicInt8Units(m: OnnxModel, consumers: Map<string, NodeInfo[]>): QuantizedUnit[] {
  const units: QuantizedUnit[] = [];
  const only = (t: string, op: string) => {
    const c = consumers.get(t) ?? [];
    return c.length === 1 && c[0].opType === op && c[0].domain === '' ? c[0] : undefined;
  };
  for (const d of m.nodes) {
    if (d.opType !== 'DynamicQuantizeLinear' || d.domain !== '') continue;
    const [xq, xScale, xZp] = d.outputs;
    for (const mi of consumers.get(xq) ?? []) {
      if (mi.opType !== 'MatMulInteger' || mi.inputs[0] !== xq || (mi.inputs[2] && mi.inputs[2] !== xZp)) continue;
      const wq = constantTensor(m, mi.inputs[1]);
      if (!wq || wq.dims.length !== 2) continue;
      const cast = only(mi.outputs[0], 'Cast');
      if (!cast) continue;
      const fin = only(cast.outputs[0], 'Mul');
      if (!fin) continue;
      const scaleT = fin.inputs[0] === cast.outputs[0] ? fin.inputs[1] : fin.inputs[0];
      const sm = m.nodes.find((x) => x.outputs[0] === scaleT);
      if (!sm || sm.opType !== 'Mul' || !sm.inputs.includes(xScale)) continue;
      const wScale = sm.inputs[0] === xScale ? sm.inputs[1] : sm.inputs[0];
      if (!constantTensor(m, wScale)) continue;
      const [K, N] = wq.dims;
      units.push({
        kind: 'dynamic-int8',
        input: d.inputs[0],
        output: fin.outputs[0],
        K,
        N,
        members: [mi, cast, sm, fin],
        shared: [d],
        weight() {
          const q = intValues(bytes(m, mi.inputs[1], mi));
          const zp = mi.inputs[3] ? Array.from(intValues(bytes(m, mi.inputs[3], mi))) : [0];
          return dequantizeInteger(q, zp, floats(m, wScale, sm), K, N);
        },
        emitWeightT: (e, gate) => integerWeightT(e, gate, mi.inputs[1], mi.inputs[3] || undefined, wScale),
      });
    }
  }
  return units;
}

const LLM_INT8_NAME = /^(.*)\/llm_int8\/[A-Za-z]+_\d+$/;

/** onnx/quantize/llm-int8.ts blocks, grouped by their node-name prefix, checked by structure. */
function llmInt8Units(m: OnnxModel): QuantizedUnit[] {
  const groups = new Map<string, NodeInfo[]>();
  for (const n of m.nodes) {
    const p = LLM_INT8_NAME.exec(n.name)?.[1];
    if (p !== undefined) groups.set(p, [...(groups.get(p) ?? []), n]);
  }
  const units: QuantizedUnit[] = [];
  for (const [prefix, nodes] of groups) {
    const fin = m.nodes.find((n) => n.name === prefix && n.opType === 'Reshape');
    const bad = (why: string) => new QuantlensError('GRADIENT', `llm-int8 block "${prefix}" is not the pattern onnx/quantize/llm-int8.ts writes: ${why}`);
    if (!fin) throw bad('no final Reshape of that name');
    const by = (op: string, pred: (n: NodeInfo) => boolean = () => true) => nodes.filter((n) => n.opType === op && pred(n));
    const one = (op: string, pred?: (n: NodeInfo) => boolean) => {
      const r = by(op, pred);
      if (r.length !== 1) throw bad(`expected one ${op}${pred ? ' of its kind' : ''}, found ${r.length}`);
      return r[0];
    };
    const mi = one('MatMulInteger');
    const shape = one('Shape');
    const input = shape.inputs[0];
    const cbName = mi.inputs[1];
    const cbT = constantTensor(m, cbName);
    if (!cbT || cbT.dims.length !== 2 || cbT.dataType !== DTYPE.int8) throw bad(`MatMulInteger weight "${cbName}" is not a constant int8 matrix`);
    const [K, N] = cbT.dims;
    const gatherCb = one('Gather', (n) => n.inputs[0] === cbName);
    const castCb = one('Cast', (n) => n.inputs[0] === gatherCb.outputs[0]);
    const mulScb = one('Mul', (n) => n.inputs[0] === castCb.outputs[0]);
    const mulInv = one('Mul', (n) => n.inputs[0] === mulScb.outputs[0]);
    const castY = one('Cast', (n) => n.inputs[0] === mi.outputs[0]);
    const mulStats = one('Mul', (n) => n.inputs[0] === castY.outputs[0]);
    const mulInvSq = one('Mul', (n) => n.inputs[0] === mulStats.outputs[0]);
    const div = one('Div');
    const nonZero = one('NonZero');
    if (!by('Reshape').some((n) => n.inputs[0] === input)) throw bad(`the activation "${input}" is not reshaped to 2-D`);
    const scalar = (name: string, n: NodeInfo) => {
      const v = floats(m, name, n);
      if (v.length !== 1) throw bad(`"${name}" is not a scalar`);
      return v[0];
    };
    const inv127 = scalar(mulInv.inputs[1], mulInv);
    const int8Factor = Math.fround(Math.fround(scalar(div.inputs[0], div) * scalar(mulInvSq.inputs[1], mulInvSq)) / inv127);
    units.push({
      kind: 'llm-int8',
      input,
      output: fin.outputs[0],
      K,
      N,
      members: [...nodes, fin],
      shared: [],
      outliers: { columns: nonZero.inputs[0], int8Factor },
      weight() {
        const cb = bytes(m, cbName, mi);
        return dequantizeVectorwise(intValues(cb) as Int8Array, floats(m, mulScb.inputs[1], mulScb), K, N, inv127);
      },
      emitWeightT: (e, gate) => vectorwiseWeightT(e, gate, cbName, mulScb.inputs[1], inv127),
    });
  }
  return units;
}

/** Every quantized linear unit of the model (weights are dequantized only when a rule runs). */
export function findQuantizedUnits(m: OnnxModel): QuantizedUnit[] {
  const consumers = new Map<string, NodeInfo[]>();
  for (const n of m.nodes) for (const i of n.inputs) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const units: QuantizedUnit[] = [];
  for (const n of m.nodes) {
    if (n.domain !== 'com.microsoft') continue;
    if (n.opType === 'MatMulNBits') units.push(nbitsUnit(m, n));
    else if (n.opType === 'MatMulBnb4') units.push(bnb4Unit(m, n));
  }
  return [...units, ...dynamicInt8Units(m, consumers), ...llmInt8Units(m)];
}

/**
 * Replace the units on the reverse path by one node each (inputs [x, …], outputs [y]) with a
 * straight-through rule. `active` = tensors depending on the override through float tensors.
 * Refuses (GRADIENT) when a tensor inside a unit is the override or is read on the path outside
 * the unit: skipping the unit's inner nodes would then lose that gradient.
 */
export function collapseQuantizedUnits(
  m: OnnxModel,
  pathNodes: NodeInfo[],
  active: Set<string>,
  override: string,
): { nodes: NodeInfo[]; rules: Map<NodeInfo, GradRule> } {
  const onPath = new Set(pathNodes);
  const units = findQuantizedUnits(m).filter((u) => active.has(u.input) && onPath.has(u.members[u.members.length - 1]));
  const rules = new Map<NodeInfo, GradRule>();
  if (units.length === 0) return { nodes: pathNodes, rules };
  const removed = new Set<NodeInfo>();
  const byOutputNode = new Map<NodeInfo, NodeInfo>();
  const unitOutputs = new Set(units.map((u) => u.output));
  for (const u of units) {
    for (const n of [...u.members, ...u.shared]) removed.add(n);
    const last = u.members[u.members.length - 1];
    const inputs = u.outliers ? [u.input, u.outliers.columns] : [u.input];
    const node: NodeInfo =
      u.members.length === 1 ? last : { name: last.name, opType: `StraightThrough(${u.kind})`, domain: 'quantlens', inputs, outputs: [u.output], attributes: {}, range: last.range };
    byOutputNode.set(last, node);
    rules.set(node, straightThroughRule(u));
  }
  for (const n of removed) {
    for (const t of n.outputs) {
      if (!t || unitOutputs.has(t)) continue;
      // Only readers on the reverse path matter: others never send a gradient back.
      const outside = pathNodes.find((c) => !removed.has(c) && c.inputs.includes(t));
      if (t === override || outside) {
        const use = outside ? `is read by ${outside.opType} (${where(outside)})` : 'is the attributed tensor';
        throw new QuantlensError('GRADIENT', `tensor "${t}" inside the quantized ${n.opType} unit (${where(n)}) ${use}; the straight-through gradient skips it`);
      }
    }
  }
  const nodes: NodeInfo[] = [];
  for (const n of pathNodes) {
    const unitNode = byOutputNode.get(n);
    if (unitNode) nodes.push(unitNode);
    else if (!removed.has(n)) nodes.push(n);
  }
  return { nodes, rules };
}
