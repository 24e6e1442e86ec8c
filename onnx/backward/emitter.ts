/**
 * The node factory the gradient rules write through. It knows every forward tensor's rank, probe
 * shape and element type (from one probe run of the forward model, see probe.ts), so rules can
 * decide statically which axes a broadcast gradient must be summed over, while the emitted nodes
 * still take every size from Shape() at run time (batch and sequence stay symbolic).
 *
 * Emitted ops follow the model's default-domain opset: from 13 ReduceSum/Squeeze/Unsqueeze/Split
 * take axes/split as inputs (attributes before, opsets 11 and 12); ReduceMean does so only from 18.
 */
import { QuantlensError } from '../../core/errors.ts';
import { floatToHalf } from '../dtypes.ts';
import { tensor, type AttrInput, type BuiltNode, type TensorData } from '../builder.ts';

/** ORT element type names ('float32', 'int64', ...). */
export type ElemType = string;

export interface TensorMeta {
  type: ElemType;
  /** The concrete shape seen in the probe run (batch 2, sequence 5); only ranks and static 1s are relied on. */
  shape: number[];
}

export type EmittedNode = BuiltNode;

/** The attribution graph's input of objective token ids [batch] (graph.ts re-exports it). */
export const TARGET_INPUT = 'target_ids';

export const FLOAT_TYPES = new Set(['float32', 'float16', 'float64', 'bfloat16']);

export class GradEmitter {
  readonly nodes: EmittedNode[] = [];
  private counter = 0;
  private shapeCache = new Map<string, string>();
  private metaOf = new Map<string, TensorMeta>();
  /** Values of the int64 constants this emitter created (rules read axes / splits from them). */
  readonly intConstants = new Map<string, number[]>();

  constructor(
    readonly opset: number,
    private readonly lookup: (name: string) => TensorMeta | undefined,
    private readonly prefix = '/quantlens/grad',
    /** Names of the model's stored tensors (initializers, Constant nodes): see gate(). */
    private readonly isStored: (name: string) => boolean = () => false,
  ) {}

  /**
   * A stored tensor read at run time, once `after` (a gradient) exists: Slice(x, zero, end) with a
   * zero computed from `after`'s shape and the target ids' values. ONNX Runtime folds nodes whose
   * inputs are all constant into new initializers, so a Transpose or a dequantization of a weight
   * would otherwise become a resident second copy of it; behind the gate it is a transient of one
   * layer, made just before the backward node that reads it. Tensors that are not stored (computed
   * ones) and small ones (< 1024 elements, not worth a node) are returned as they are.
   */
  gate(x: string, after: string): string {
    if (!this.isStored(x)) return x;
    const shape = (this.metaOf.get(x) ?? this.lookup(x))?.shape ?? [];
    if (shape.length === 0 || shape.reduce((a, d) => a * d, 1) < 1024) return x;
    return this.op1('Slice', [x, this.zeroAfter(after), this.i64([Number.MAX_SAFE_INTEGER]), this.i64([0])]);
  }

  private readonly zeroAfterName = new Map<string, string>();

  /** A run-time zero [1] that exists once `after` does (one per gradient: the gates of a unit share it). */
  private zeroAfter(after: string): string {
    let z = this.zeroAfterName.get(after);
    if (!z) this.zeroAfterName.set(after, (z = this.op1('Mul', [this.op1('Add', [this.op1('Slice', [this.shape(after), this.i64([0]), this.i64([1])]), this.targetZero()]), this.i64([0])])));
    return z;
  }

  private targetZeroName?: string;

  /** min(target ids)·0 [1]: a zero no optimizer can know before the run (one per graph). */
  private targetZero(): string {
    this.targetZeroName ??= this.op1('Mul', [this.op1('ReduceMin', [TARGET_INPUT], { keepdims: 1 }), this.i64([0])]);
    return this.targetZeroName;
  }

  meta(name: string): TensorMeta {
    const m = this.metaOf.get(name) ?? this.lookup(name);
    if (!m) throw new QuantlensError('GRADIENT', `no shape/type known for tensor "${name}"`);
    return m;
  }

  /** Record the probe-equivalent shape of a tensor the emitter created (rules chain on it). */
  setMeta(name: string, meta: TensorMeta): string {
    this.metaOf.set(name, meta);
    return name;
  }

  rank(name: string): number {
    return this.meta(name).shape.length;
  }

  fresh(hint: string): string {
    return `${this.prefix}/${hint}_${this.counter++}`;
  }

  /** Emit one node; returns its output names. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrInput> = {}, nOut = 1, domain = ''): string[] {
    const name = this.fresh(opType);
    const outputs = Array.from({ length: nOut }, (_, k) => `${name}_out${k}`);
    this.nodes.push({ opType, inputs, outputs, attrs, name, domain });
    return outputs;
  }

  op1(opType: string, inputs: string[], attrs: Record<string, AttrInput> = {}): string {
    return this.op(opType, inputs, attrs)[0];
  }

  /** A constant tensor as a Constant node. */
  constTensor(t: TensorData, hint = 'const'): string {
    const name = this.fresh(hint);
    const out = `${name}_out0`;
    this.nodes.push({ opType: 'Constant', inputs: [], outputs: [out], attrs: { value: { kind: 'tensor', v: t } }, name, domain: '' });
    return out;
  }

  /** A scalar constant of a float element type. */
  scalar(value: number, type: ElemType): string {
    return this.constTensor(floatTensor(type, [], [value]), 'scalar');
  }

  i64(values: number[], dims: number[] = [values.length]): string {
    const name = this.constTensor(tensor('int64', dims, BigInt64Array.from(values.map(BigInt))), 'i64');
    this.intConstants.set(name, values);
    return name;
  }

  shape(x: string): string {
    let s = this.shapeCache.get(x);
    if (!s) {
      s = this.op1('Shape', [x]);
      this.shapeCache.set(x, s);
    }
    return s;
  }

  /** Zeros with x's runtime shape and x's element type. */
  zerosLike(x: string): string {
    const type = this.meta(x).type;
    return this.op1('ConstantOfShape', [this.shape(x)], { value: { kind: 'tensor', v: floatTensor(type, [1], [0]) } });
  }

  reduceSum(x: string, axes: number[], keepdims: boolean): string {
    if (this.opset < 13) return this.op1('ReduceSum', [x], { axes, keepdims: keepdims ? 1 : 0 });
    return this.op1('ReduceSum', [x, this.i64(axes)], { keepdims: keepdims ? 1 : 0 });
  }

  reduceMean(x: string, axes: number[], keepdims: boolean): string {
    if (this.opset >= 18) return this.op1('ReduceMean', [x, this.i64(axes)], { keepdims: keepdims ? 1 : 0 });
    return this.op1('ReduceMean', [x], { axes, keepdims: keepdims ? 1 : 0 });
  }

  unsqueeze(x: string, axes: number[]): string {
    if (this.opset < 13) return this.op1('Unsqueeze', [x], { axes });
    return this.op1('Unsqueeze', [x, this.i64(axes)]);
  }

  squeeze(x: string, axes: number[]): string {
    if (this.opset < 13) return this.op1('Squeeze', [x], { axes });
    return this.op1('Squeeze', [x, this.i64(axes)]);
  }

  /** Split into parts of static sizes along an axis. */
  split(x: string, axis: number, sizes: number[]): string[] {
    if (this.opset < 13) return this.op('Split', [x], { axis, split: sizes }, sizes.length);
    return this.op('Split', [x, this.i64(sizes)], { axis }, sizes.length);
  }

  /**
   * Sum a gradient of shape gShape (numpy-broadcast result) back to the shape of `x`: leading
   * extra axes and axes where x has a static 1 but the result does not. The probe runs with batch
   * 2 and sequence 5, so a 1 in x's probe shape is a genuine broadcast dim, never a symbolic one.
   */
  unbroadcast(g: string, gShape: number[], x: string): string {
    const xs = this.meta(x).shape;
    const lead = gShape.length - xs.length;
    if (lead < 0) throw new QuantlensError('GRADIENT', `gradient of rank ${gShape.length} cannot be reduced to "${x}" of rank ${xs.length}`);
    const axes: number[] = [];
    for (let i = 0; i < lead; i++) axes.push(i);
    for (let i = 0; i < xs.length; i++) if (xs[i] === 1 && gShape[lead + i] !== 1) axes.push(lead + i);
    if (axes.length === 0) return g;
    let r = this.reduceSum(g, axes, true);
    if (lead > 0) r = this.squeeze(r, axes.slice(0, lead));
    return r;
  }
}

/** A float tensor of the given ORT element type. */
export function floatTensor(type: ElemType, dims: number[], values: number[]): TensorData {
  switch (type) {
    case 'float32':
      return tensor('float', dims, Float32Array.from(values));
    case 'float16':
      return tensor('float16', dims, floatToHalf(values));
    case 'float64':
      return tensor('double', dims, Float64Array.from(values));
    default:
      throw new QuantlensError('GRADIENT', `gradients of ${type} tensors are not supported`);
  }
}

/** The numpy broadcast of two shapes (probe shapes, so all concrete). */
export function broadcastShapes(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Normalise a possibly negative axis for a tensor of rank r. */
export function normAxis(axis: number, r: number): number {
  return axis < 0 ? axis + r : axis;
}
