/**
 * ONNX Runtime dynamic quantization of MatMul (quantize_dynamic with weight_type QInt8,
 * per_channel False — what transformers.js ships as model_int8 / model_quantized):
 *  - weight: int8 symmetric per tensor, range [-127, 127], scale = max|B| / 127, zero point 0,
 *    q = round_half_even(B / scale) (numpy.round);
 *  - activation at run time: DynamicQuantizeLinear (uint8, asymmetric, per tensor);
 *  - y = float(MatMulInteger(a_q, B_q, a_zp)) * (a_scale * w_scale), the node chain
 *    quantize_dynamic writes (ORT fuses it into DynamicQuantizeMatMul at load).
 */
import { ROUND_EVEN, type VariantEmitter, type WeightPlan } from './variants.ts';

export function quantizeInt8PerTensor(b: Float32Array): { q: Int8Array; scale: number } {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(b[i]));
  const scale = Math.fround(m / 127);
  const q = new Int8Array(b.length);
  if (scale === 0) return { q, scale: 1 };
  // Round half to even by the float64 add of 1.5·2⁵² (variants.ts ROUND_EVEN), then clamp; NaN stays NaN and stores 0, as before.
  const M = ROUND_EVEN; // a local: an imported binding read in the loop costs 4× the loop
  for (let i = 0; i < b.length; i++) {
    const r = Math.fround(b[i] / scale) + M - M;
    q[i] = r > 127 ? 127 : r < -127 ? -127 : r;
  }
  return { q, scale };
}

export function dynamicInt8Emitter(): VariantEmitter {
  return {
    weight(weightName, K, N, ctx): WeightPlan {
      const q = ctx.fresh(`${weightName}_quantized`);
      const s = ctx.fresh(`${weightName}_scale`);
      return {
        tensors: [
          { name: q, type: 'int8', dims: [K, N] },
          { name: s, type: 'float', dims: [] },
        ],
        produce(b) {
          const r = quantizeInt8PerTensor(b);
          return { [q]: r.q, [s]: Float32Array.of(r.scale) };
        },
      };
    },
    nodes(plan, a, y, _K, _N, mainName, ctx) {
      const [wq, ws] = plan.tensors.map((t) => t.name);
      const p = (s: string) => ctx.fresh(`${y}/${s}`);
      const [aq, as, azp, yi, yf, sc] = [p('a_q'), p('a_scale'), p('a_zero_point'), p('y_int32'), p('y_float'), p('scale')];
      return [
        { opType: 'DynamicQuantizeLinear', inputs: [a], outputs: [aq, as, azp], name: `${mainName}_quant` },
        { opType: 'MatMulInteger', inputs: [aq, wq, azp], outputs: [yi], name: `${mainName}_MatMulInteger` },
        { opType: 'Cast', inputs: [yi], outputs: [yf], attrs: { to: 1 }, name: `${mainName}_cast` },
        { opType: 'Mul', inputs: [as, ws], outputs: [sc], name: `${mainName}_scales_mul` },
        { opType: 'Mul', inputs: [yf, sc], outputs: [y], name: mainName },
      ];
    },
  };
}
