/**
 * bitsandbytes LLM.int8() (Dettmers et al. 2022; the paper's 8-bit setting, load_in_8bit with
 * llm_int8_threshold 6.0) emulated with standard ONNX ops + MatMulInteger. Per MatMul, with
 * X flattened to [M = all tokens of the batch, K] and W = B^T [N, K]:
 *
 *  weights (offline, bnb int8_vectorwise_quant with threshold 0):
 *    SCB[n] = max_k |W[n,k]|;  CB[n,k] = round(W[n,k] * (127 / SCB[n]))          (int8)
 *  activations (per call, bnb int8_vectorwise_quant with threshold t):
 *    outlier elements |x| >= t; outlier COLUMNS = columns with an outlier on ANY token of the batch
 *    Xz = X with outlier elements set to 0;  SCA[m] = max_k |Xz[m,k]|
 *    CA = round(Xz * (127 / SCA[m])), then outlier columns set to 0                (int8)
 *  output:
 *    Y = (int32 CA @ CB^T) * (SCA[m] * SCB[n]) * 6.200124e-05                    (1/127²)
 *      + X[:, outlier cols] @ ((CB[:, outlier cols] * SCB) * 7.874015718698502e-3)^T  (float)
 *
 * The outlier part gathers only the outlier columns at run time (as bnb does), so no float copy of
 * the weights is kept. Differences from bitsandbytes, by design or necessity:
 *  - compute dtype: everything here is float32 (fp16 models are cast to float32 around the block);
 *    bnb computes the outlier matmul, the 127/SCA scaling and the dequantized output in the
 *    activation dtype (fp16 in the paper) — so results differ at fp16 rounding level.
 *  - rounding: ONNX Round is half-to-even like torch.round (same), and the int8 GEMM is exact in
 *    both (int32 accumulation); the int32→float dequant multiplies in the same order as bnb's
 *    default backend, but ORT may fuse MatMulInteger+Cast+Mul (last-bit differences).
 *  - a token row that is all zero after removing outliers (SCA = 0) uses scale 1 instead of
 *    bnb's 127/0 = inf (its contribution is 0 either way).
 *  - bnb's CUDA path can skip the decomposition when no column has outliers; the result is the same.
 */
import { tensor } from '../builder.ts';
import { ROUND_EVEN, type NodeSpec, type VariantContext, type VariantEmitter, type WeightPlan } from './variants.ts';

/** bnb int8_vectorwise_quant of W = B^T: CB stored as ONNX [K, N] int8 (MatMulInteger's B), SCB [N]. */
export function quantizeVectorwise(b: Float32Array, K: number, N: number): { cb: Int8Array; scb: Float32Array } {
  const f = Math.fround;
  const scb = new Float32Array(N);
  for (let k = 0; k < K; k++) {
    const row = k * N;
    for (let n = 0; n < N; n++) scb[n] = Math.max(scb[n], Math.abs(b[row + n]));
  }
  const r = new Float32Array(N);
  for (let n = 0; n < N; n++) r[n] = scb[n] === 0 ? 0 : f(127 / scb[n]);
  const cb = new Int8Array(K * N);
  const M = ROUND_EVEN; // a local: an imported binding read in the loop costs 4× the loop
  // Round half to even by the float64 add of 1.5·2⁵² (exact for |x| < 2⁵¹; here |x| ≤ 127): the
  // same integers as round-half-to-even, and NaN / ±Infinity store 0 in an Int8Array either way.
  for (let k = 0; k < K; k++) {
    const row = k * N;
    for (let n = 0; n < N; n++) cb[row + n] = f(b[row + n] * r[n]) + M - M;
  }
  return { cb, scb };
}

/** The stored tensors of one llm-int8 weight: int8 CB, float SCB and the block's small constants. */
function llmInt8Weight(threshold: number, weightName: string, K: number, N: number, ctx: VariantContext): WeightPlan {
  const names = {
    cb: ctx.fresh(`${weightName}_CB`),
    scb: ctx.fresh(`${weightName}_SCB`),
    shape2d: ctx.fresh(`${weightName}_llm_int8/shape_2d`),
    flatK: ctx.fresh(`${weightName}_llm_int8/shape_k`),
    lastN: ctx.fresh(`${weightName}_llm_int8/n`),
    thr: ctx.fresh(`${weightName}_llm_int8/threshold`),
    zero: ctx.fresh(`${weightName}_llm_int8/zero`),
    one: ctx.fresh(`${weightName}_llm_int8/one`),
    c127: ctx.fresh(`${weightName}_llm_int8/c127`),
    inv127sq: ctx.fresh(`${weightName}_llm_int8/inv_127_sq`),
    inv127: ctx.fresh(`${weightName}_llm_int8/inv_127`),
    c128: ctx.fresh(`${weightName}_llm_int8/c128`),
    zp128: ctx.fresh(`${weightName}_llm_int8/zero_point_128`),
    sliceStart: ctx.fresh(`${weightName}_llm_int8/slice_start`),
    sliceEnd: ctx.fresh(`${weightName}_llm_int8/slice_end`),
  };
  const small = {
    [names.shape2d]: tensor('int64', [2], BigInt64Array.of(-1n, BigInt(K))),
    [names.flatK]: tensor('int64', [1], BigInt64Array.of(BigInt(K))),
    [names.lastN]: tensor('int64', [1], BigInt64Array.of(BigInt(N))),
    [names.thr]: tensor('float', [], Float32Array.of(threshold)),
    [names.zero]: tensor('float', [], Float32Array.of(0)),
    [names.one]: tensor('float', [], Float32Array.of(1)),
    [names.c127]: tensor('float', [], Float32Array.of(127)),
    [names.inv127sq]: tensor('float', [], Float32Array.of(6.200124e-5)),
    [names.inv127]: tensor('float', [], Float32Array.of(7.874015718698502e-3)),
    [names.c128]: tensor('float', [], Float32Array.of(128)),
    [names.zp128]: tensor('uint8', [], Uint8Array.of(128)),
    [names.sliceStart]: tensor('int64', [1], BigInt64Array.of(0n)),
    [names.sliceEnd]: tensor('int64', [1], BigInt64Array.of(-1n)),
  };
  // ReduceMax takes axes as an input from opset 18 on (an attribute before).
  if (ctx.opset >= 18) {
    small[ctx.fresh(`${weightName}_llm_int8/axes0`)] = tensor('int64', [1], BigInt64Array.of(0n));
    small[ctx.fresh(`${weightName}_llm_int8/axes1`)] = tensor('int64', [1], BigInt64Array.of(1n));
  }
  return {
    tensors: [
      { name: names.cb, type: 'int8', dims: [K, N] },
      { name: names.scb, type: 'float', dims: [N] },
      ...Object.entries(small).map(([name, t]) => ({ name, type: t.type, dims: t.dims })),
    ],
    produce(b) {
      const { cb, scb } = quantizeVectorwise(b, K, N);
      const out: Record<string, Int8Array | Float32Array | BigInt64Array | Uint8Array> = { [names.cb]: cb, [names.scb]: scb };
      for (const [name, t] of Object.entries(small)) out[name] = t.data as Float32Array | BigInt64Array | Uint8Array;
      return out;
    },
  };
}

/** The nodes of one llm-int8 block: the int8 path for inlier columns plus the float outlier path (see the header). */
function llmInt8Nodes(plan: WeightPlan, a: string, y: string, _K: number, _N: number, mainName: string, ctx: VariantContext): NodeSpec[] {
  const [cb, scb, shape2d, flatK, lastN, thr, zero, one, c127, inv127sq, inv127, c128, zp128, sliceStart, sliceEnd, axes0 = '', axes1 = ''] = plan.tensors.map((t) => t.name);
  const v = (s: string) => ctx.fresh(`${y}/llm_int8/${s}`);
  const nodes: NodeSpec[] = [];
  let k = 0;
  const add = (opType: string, inputs: string[], outputs: string[], attrs?: NodeSpec['attrs']) => {
    nodes.push({ opType, inputs, outputs, attrs, name: `${mainName}/llm_int8/${opType}_${k++}` });
    return outputs[0];
  };
  // ReduceMax takes axes as an attribute before opset 18 and as an input from 18 on.
  const reduceMax = (x: string, axes: string, axis: number, out: string) =>
    ctx.opset >= 18 ? add('ReduceMax', [x, axes], [out], { keepdims: 1 }) : add('ReduceMax', [x], [out], { axes: [axis], keepdims: 1 });

  // GreaterOrEqual exists from opset 12; before it, a >= t is Not(a < t) (no NaN in |x| of finite x).
  const atLeast = (x: string, t: string, out: string) =>
    ctx.opset >= 12 ? add('GreaterOrEqual', [x, t], [out]) : add('Not', [add('Less', [x, t], [ctx.fresh(`${out}/less`)])], [out]);

  const x = add('Reshape', [a, shape2d], [v('x2d')]);
  const ax = add('Abs', [x], [v('abs')]);
  const colMax = reduceMax(ax, axes0, 0, v('col_absmax'));
  const colOut = atLeast(colMax, thr, v('outlier_cols'));
  const elemOut = atLeast(ax, thr, v('outlier_elems'));
  // int8 part
  const xz = add('Where', [elemOut, zero, x], [v('x_no_outliers')]);
  const rowMax = reduceMax(add('Abs', [xz], [v('abs_no_outliers')]), axes1, 1, v('SCA'));
  const rowPos = add('Greater', [rowMax, zero], [v('SCA_positive')]);
  const rowSafe = add('Where', [rowPos, rowMax, one], [v('SCA_safe')]);
  const rscale = add('Div', [c127, rowSafe], [v('row_scale')]);
  const xr = add('Round', [add('Mul', [xz, rscale], [v('x_scaled')])], [v('x_rounded')]);
  const xr0 = add('Where', [colOut, zero, xr], [v('x_rounded_no_outlier_cols')]);
  // CA + 128 as uint8 with zero point 128: the same integers, through ORT's well-supported
  // u8×s8 kernels (there is no CPU kernel for the s8×s8 MatMulIntegerToFloat ORT fuses into).
  const xq = add('Cast', [add('Add', [xr0, c128], [v('CA_plus_128')])], [v('CA_u8')], { to: 2 });
  const yi = add('MatMulInteger', [xq, cb, zp128], [v('y_int32')]);
  const yf = add('Cast', [yi], [v('y_int32_float')], { to: 1 });
  const stats = add('Mul', [rowSafe, scb], [v('SCA_x_SCB')]);
  const yInt = add('Mul', [add('Mul', [yf, stats], [v('y_scaled')]), inv127sq], [v('y_int8_part')]);
  // float outlier part: only the outlier columns of X and rows of CB
  // NonZero gives [1, n_outliers]; reshape by sliceEnd (= [-1]) to a flat index list.
  const nz = add('NonZero', [add('Reshape', [colOut, flatK], [v('outlier_cols_flat')])], [v('outlier_nonzero')]);
  const idx = add('Reshape', [nz, sliceEnd], [v('outlier_idx')]);
  const xo = add('Gather', [x, idx], [v('x_outlier_cols')], { axis: 1 });
  const wo = add('Cast', [add('Gather', [cb, idx], [v('CB_outlier_rows')], { axis: 0 })], [v('CB_outlier_rows_float')], { to: 1 });
  const wdq = add('Mul', [add('Mul', [wo, scb], [v('CB_x_SCB')]), inv127], [v('W_outlier_dequant')]);
  const yOut = add('MatMul', [xo, wdq], [v('y_outlier_part')]);
  const y2 = add('Add', [yInt, yOut], [v('y2d')]);
  // back to [..., N]
  const lead = add('Slice', [add('Shape', [a], [v('a_shape')]), sliceStart, sliceEnd], [v('lead_dims')]);
  const outShape = add('Concat', [lead, lastN], [v('out_shape')], { axis: 0 });
  nodes.push({ opType: 'Reshape', inputs: [y2, outShape], outputs: [y], name: mainName });
  return nodes;
}

export function llmInt8Emitter(threshold: number): VariantEmitter {
  return { weight: (weightName, K, N, ctx) => llmInt8Weight(threshold, weightName, K, N, ctx), nodes: llmInt8Nodes };
}
