/**
 * ONNX Runtime session config entries for quantized models, so ORT runs the arithmetic that was
 * written into the file and nothing coarser. The pipeline sets these on every quantized session
 * AND records them (describeSettings puts `extra` into the Parquet metadata).
 *
 * Keys (onnxruntime_session_options_config_keys.h, ORT 1.30):
 *  - session.qdq_matmulnbits_accuracy_level: the accuracy_level ORT gives MatMulNBits nodes it
 *    creates by fusing DequantizeLinear + MatMul (default "4" = int8 activations, relative error
 *    ~5e-3). "0" keeps float activations, like the accuracy_level=0 quantlens writes itself.
 *  - session.disable_quant_qdq: "1" turns off all QDQ-format fusions (DQ + op → quantized op), so a
 *    dequantize-then-float-op graph is never re-quantized behind our back.
 *  - session.x64quantprecision: "1" makes MLAS use its U8U8 kernels on AVX2/AVX512 CPUs without
 *    VNNI, where the faster U8S8 path can saturate int16 partial sums; the int8 MatMulInteger
 *    results (llm-int8, dynamic-int8) are then exact on every x64 CPU, not only VNNI ones.
 */
export function quantSessionConfig(): Record<string, string> {
  return {
    'session.qdq_matmulnbits_accuracy_level': '0',
    'session.disable_quant_qdq': '1',
    'session.x64quantprecision': '1',
  };
}
