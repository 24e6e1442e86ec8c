/**
 * The one error type users see. `code` is stable and machine-readable; `message` is a single
 * line naming where it happened (file:line, YAML key, node name). The CLI prints only the
 * message unless --debug is set.
 */
export type ErrorCode =
  | 'CONFIG' // pipeline YAML: syntax, unknown key, bad value
  | 'DATASET' // dataset file: missing, malformed, missing column, empty
  | 'MODEL' // model folder / ONNX graph problems, missing layers
  | 'TOKENIZER'
  | 'QUANTIZE'
  | 'CONVERT'
  | 'GRADIENT' // backward graph: unsupported op etc.
  | 'BUDGET' // memory budget refused before work starts
  | 'IO'
  | 'STATE' // shard/checkpoint state mismatch
  | 'INTERRUPTED'
  | 'USAGE' // the command line itself: unknown option, malformed flag or bad flag value (exit 2)
  | 'UNSUPPORTED';

export class QuantlensError extends Error {
  readonly code: ErrorCode;
  /** Where it happened, e.g. "pipeline.yaml:12 (dataset.gold)" or "node /model/layers.0/mlp/act_fn/Mul". */
  readonly where?: string;
  constructor(code: ErrorCode, message: string, where?: string, options?: { cause?: unknown }) {
    const oneLine = message.replace(/\s*\n\s*/g, ' ');
    super(where ? `${where}: ${oneLine}` : oneLine, options);
    this.name = 'QuantlensError';
    this.code = code;
    this.where = where;
  }
}

export function isQuantlensError(e: unknown): e is QuantlensError {
  return e instanceof QuantlensError;
}
