/**
 * Gradient rules of data-movement ops. All sizes come from Shape() of forward tensors at run
 * time; only ranks and axes are fixed when the graph is built.
 */
import { tensor } from '../builder.ts';
import { floatTensor, normAxis } from './emitter.ts';
import { attrInt, attrInts, gradError, onlyGrad, optionalInput, type GradRule, type RuleContext } from './rule.ts';

const INT64 = 7;

// Pure re-shapes: the gradient takes the input's shape back.
const reshapeLike: GradRule = (c) => {
  const x = c.node.inputs[0];
  return c.node.inputs.map((_, i) => (i === 0 ? c.e.op1('Reshape', [onlyGrad(c), c.e.shape(x)]) : null));
};

const transpose: GradRule = (c) => {
  const r = c.e.rank(c.node.inputs[0]);
  const perm = attrInts(c.node, 'perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
  const inverse = new Array<number>(r);
  perm.forEach((p, i) => (inverse[p] = i));
  return [c.e.op1('Transpose', [onlyGrad(c)], { perm: inverse })];
};

const expand: GradRule = (c) => {
  const x = c.node.inputs[0];
  return [c.e.unbroadcast(onlyGrad(c), c.e.meta(c.node.outputs[0]).shape, x), null];
};

// Concat: split the gradient at the inputs' (run-time) sizes along the axis.
const concat: GradRule = (c) => {
  const g = onlyGrad(c);
  const r = c.e.rank(c.node.outputs[0]);
  const axis = normAxis(attrInt(c.node, 'axis', 0), r);
  const sizes = c.node.inputs.map((x) => c.e.op1('Slice', [c.e.shape(x), c.e.i64([axis]), c.e.i64([axis + 1])]));
  if (c.e.opset < 13) {
    // Split takes its sizes only as an attribute before opset 13: slice at run-time offsets instead.
    let start = c.e.i64([0]);
    return c.node.inputs.map((_, i) => {
      const end = c.e.op1('Add', [start, sizes[i]]);
      const part = c.needs[i] ? c.e.op1('Slice', [g, start, end, c.e.i64([axis])]) : null;
      start = end;
      return part;
    });
  }
  const split = c.e.op1('Concat', sizes, { axis: 0 });
  const parts = c.e.op('Split', [g, split], { axis }, c.node.inputs.length);
  return c.node.inputs.map((_, i) => (c.needs[i] ? parts[i] : null));
};

// Split: concatenate the outputs' gradients, zeros for outputs that received none.
const split: GradRule = (c) => {
  const r = c.e.rank(c.node.inputs[0]);
  const axis = normAxis(attrInt(c.node, 'axis', 0), r);
  const parts = c.node.outputs.map((y, i) => c.gy[i] ?? c.e.zerosLike(y));
  return [parts.length === 1 ? parts[0] : c.e.op1('Concat', parts, { axis }), null];
};

/**
 * Slice: undo one sliced axis at a time, last first. For axis a the kept positions are
 * Slice(Range(0, dim_a), start, end, step), which handles negative and clamped bounds and
 * negative steps exactly as Slice does; the gradient is scattered to them in zeros of the shape
 * the tensor had before that axis was sliced (dims of earlier-sliced axes from y, the rest from x).
 */
const slice: GradRule = (c) => {
  const e = c.e;
  const [x, starts, ends] = c.node.inputs;
  const axesIn = optionalInput(c.node, 3);
  const stepsIn = optionalInput(c.node, 4);
  if (c.needs.slice(1).some(Boolean)) throw gradError(c.node, 'slice bounds cannot carry a gradient');
  const y = c.node.outputs[0];
  const r = e.rank(x);
  const n = e.meta(starts).shape[0];
  let axes: number[];
  if (axesIn) {
    const v = c.constInts(axesIn);
    if (!v) throw gradError(c.node, 'axes must be a constant');
    axes = v.map((a) => normAxis(a, r));
  } else axes = Array.from({ length: n }, (_, i) => i);
  const asI64 = (t: string) => (e.meta(t).type === 'int64' ? t : e.op1('Cast', [t], { to: INT64 }));
  const s64 = asI64(starts);
  const e64 = asI64(ends);
  const st64 = stepsIn ? asI64(stepsIn) : null;
  const xShape = e.shape(x);
  const yShape = e.shape(y);
  const type = e.meta(x).type;
  let cur = onlyGrad(c);
  for (let j = axes.length - 1; j >= 0; j--) {
    const a = axes[j];
    const pick = (t: string) => e.op1('Slice', [t, e.i64([j]), e.i64([j + 1])]);
    const dim = e.op1('Gather', [xShape, e.i64([a], [])]);
    const range = e.op1('Range', [e.i64([0], []), dim, e.i64([1], [])]);
    const kept = e.op1('Slice', [range, pick(s64), pick(e64), e.i64([0]), st64 ? pick(st64) : e.i64([1])]);
    const others = Array.from({ length: r }, (_, d) => d).filter((d) => d !== a);
    const idx = e.op1('Expand', [others.length ? e.unsqueeze(kept, others) : kept, e.op1('Shape', [cur])]);
    const before = new Uint8Array(r);
    for (const p of axes.slice(0, j)) before[p] = 1;
    const targetShape = e.op1('Where', [e.constTensor(tensor('bool', [r], before)), yShape, xShape]);
    const zeros = e.op1('ConstantOfShape', [targetShape], { value: { kind: 'tensor', v: zeroTensor(type) } });
    cur = e.op1('ScatterElements', [zeros, idx, cur], { axis: a });
  }
  return [cur, null, null, null, null];
};

function zeroTensor(type: string) {
  if (type === 'float32') return tensor('float', [1], new Float32Array(1));
  if (type === 'float16') return tensor('float16', [1], new Uint16Array(1));
  if (type === 'float64') return tensor('double', [1], new Float64Array(1));
  throw new Error(`no zero of type ${type}`);
}

/**
 * Gather(data, indices, axis) with respect to data: move the gathered axis to the front, then
 * ScatterND with reduction "add" (repeated indices accumulate), then move it back.
 */
const gather: GradRule = (c: RuleContext) => {
  const e = c.e;
  if (c.needs[1]) throw gradError(c.node, 'indices cannot carry a gradient');
  if (e.opset < 16) return [gatherByOneHot(c), null];
  const [data, indices] = c.node.inputs;
  const g = onlyGrad(c);
  const r = e.rank(data);
  const q = e.rank(indices);
  const a = normAxis(attrInt(c.node, 'axis', 0), r);
  // g dims: [d_0..d_{a-1}, i_0..i_{q-1}, d_{a+1}..]; put index dims first.
  const gPerm = [
    ...Array.from({ length: q }, (_, i) => a + i),
    ...Array.from({ length: a }, (_, i) => i),
    ...Array.from({ length: r - 1 - a }, (_, i) => a + q + i),
  ];
  const isIdentity = (p: number[]) => p.every((v, i) => v === i);
  const gP = isIdentity(gPerm) ? g : e.op1('Transpose', [g], { perm: gPerm });
  const dataPerm = [a, ...Array.from({ length: r }, (_, i) => i).filter((i) => i !== a)];
  const dataShape = e.shape(data);
  const zeros = e.op1('ConstantOfShape', [e.op1('Gather', [dataShape, e.i64(dataPerm)])], {
    value: { kind: 'tensor', v: zeroTensor(e.meta(data).type) },
  });
  const idx64 = e.meta(indices).type === 'int64' ? indices : e.op1('Cast', [indices], { to: INT64 });
  const dim = e.op1('Gather', [dataShape, e.i64([a], [])]);
  const wrapped = e.op1('Where', [e.op1('Less', [idx64, e.i64([0], [])]), e.op1('Add', [idx64, dim]), idx64]);
  const scattered = e.op1('ScatterND', [zeros, e.unsqueeze(wrapped, [-1]), gP], { reduction: 'add' });
  if (isIdentity(dataPerm)) return [scattered, null];
  const inverse = new Array<number>(r);
  dataPerm.forEach((p, i) => (inverse[p] = i));
  return [e.op1('Transpose', [scattered], { perm: inverse }), null];
};

/**
 * Gather's gradient before opset 16 (no ScatterND reduction): with g viewed as [pre, Q, post]
 * (Q = the flattened indices), d data = (gᵀ·OneHot(indices, dim))ᵀ as [pre, dim, post]; repeated
 * indices add up in the MatMul.
 */
function gatherByOneHot(c: RuleContext): string {
  const e = c.e;
  const [data, indices] = c.node.inputs;
  const g = onlyGrad(c);
  const r = e.rank(data);
  const a = normAxis(attrInt(c.node, 'axis', 0), r);
  const type = e.meta(data).type;
  const dataShape = e.shape(data);
  const idx64 = e.meta(indices).type === 'int64' ? indices : e.op1('Cast', [indices], { to: INT64 });
  const dim = e.op1('Gather', [dataShape, e.i64([a], [])]);
  const wrapped = e.op1('Where', [e.op1('Less', [idx64, e.i64([0], [])]), e.op1('Add', [idx64, dim]), idx64]);
  const flat = e.op1('Reshape', [wrapped, e.i64([-1])]);
  const oneHot = e.op1('OneHot', [flat, e.unsqueeze(dim, [0]), e.constTensor(floatTensor(type, [2], [0, 1]))], { axis: -1 }); // [Q, dim]
  const size = (from: number, to: number) =>
    from >= to ? e.i64([1]) : e.op1('ReduceProd', [e.op1('Slice', [dataShape, e.i64([from]), e.i64([to])])], { axes: [0], keepdims: 1 });
  const g3 = e.op1('Reshape', [g, e.op1('Concat', [size(0, a), e.i64([-1]), size(a + 1, r)], { axis: 0 })]);
  const summed = e.op1('MatMul', [e.op1('Transpose', [g3], { perm: [0, 2, 1] }), oneHot]); // [pre, post, dim]
  return e.op1('Reshape', [e.op1('Transpose', [summed], { perm: [0, 2, 1] }), dataShape]);
}

/**
 * Tile(x, repeats): y viewed as [r_0, d_0, r_1, d_1, …] (each axis is r_i copies of d_i), so
 * dx = Σ over the repeat axes 0, 2, 4, … of g reshaped that way.
 */
const tile: GradRule = (c) => {
  const e = c.e;
  if (c.needs[1]) throw gradError(c.node, 'repeats cannot carry a gradient');
  const [x, repeats] = c.node.inputs;
  const r = e.rank(x);
  const reps64 = e.meta(repeats).type === 'int64' ? repeats : e.op1('Cast', [repeats], { to: INT64 });
  const pairs = e.op1('Concat', [e.unsqueeze(reps64, [1]), e.unsqueeze(e.shape(x), [1])], { axis: 1 });
  const interleaved = e.op1('Reshape', [pairs, e.i64([2 * r])]);
  const blocks = e.op1('Reshape', [onlyGrad(c), interleaved]);
  return [e.reduceSum(blocks, Array.from({ length: r }, (_, i) => 2 * i), false), null];
};

export const SHAPE_RULES: Record<string, GradRule> = {
  Tile: tile,
  Reshape: reshapeLike,
  Flatten: reshapeLike,
  Squeeze: reshapeLike,
  Unsqueeze: reshapeLike,
  Transpose: transpose,
  Expand: expand,
  Concat: concat,
  Split: split,
  Slice: slice,
  Gather: gather,
};
