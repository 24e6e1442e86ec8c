/**
 * The values that flow between operators. Every stage of the graph is typed by these, so a reader
 * of pipelines/assemble.ts can follow the data from dataset record to Parquet row.
 */

/** One dataset row after skip/limit/shard. `example_id` is its 0-based row index in the file. */
export interface DatasetRecord {
  example_id: number;
  fields: Record<string, string>;
}

/** A record after its prompt template was filled in. */
export interface PromptedExample {
  example_id: number;
  text: string;
  gold: string;
  fields: Record<string, string>;
}

/** A prompt after tokenization. `ids` include BOS when the tokenizer config adds it. */
export interface TokenizedExample {
  example_id: number;
  ids: Int32Array;
  gold: string;
  /** True when the prompt was longer than the model's context and was cut. */
  truncated: boolean;
  fields: Record<string, string>;
}

/**
 * A left-padded batch. Row b holds its real tokens at positions seqLen-lengths[b] … seqLen-1,
 * so the last real token of every row sits at column seqLen-1 (the predicted position). Models
 * whose attention needs real tokens first are fed it right-padded (InputPlan.padSide, onnx/feeds.ts).
 */
export interface Batch {
  index: number;
  examples: TokenizedExample[];
  seqLen: number;
  lengths: Int32Array;
  realTokens: number;
  paddedTokens: number;
}

/**
 * Captured MLP activations of one layer for the non-pad tokens of one batch at one precision.
 * `values` is row-major [rows, width]. Row r belongs to exampleId[r] at position[r] (0 = first
 * real token, i.e. BOS) and holds token tokenId[r].
 */
export interface ActivationChunk {
  batchIndex: number;
  precision: string;
  layer: number;
  tensor: string;
  width: number;
  rows: number;
  values: Float32Array;
  exampleId: Int32Array;
  position: Int32Array;
  tokenId: Int32Array;
}

/**
 * A batch's moments of one captured tensor over its real tokens, as sums of deviations from
 * `shift` (Σ(x−shift), Σ(x−shift)² in float64) plus exact min, max and near-zero counts. Produced
 * inside the model's own graph (onnx/moment-stats.ts) when no measure needs every activation.
 */
export interface BatchMoments {
  precision: string;
  layer: number;
  tensor: string;
  width: number;
  rows: number;
  shift: Float64Array;
  s1: Float64Array;
  s2: Float64Array;
  min: Float32Array;
  max: Float32Array;
  nearZero: Float64Array;
}

/** Logits at the predicted position (the last real token) of every example in a batch. */
export interface PredictionBatch {
  batchIndex: number;
  precision: string;
  exampleIds: Int32Array;
  gold: string[];
  /** Row-major [exampleIds.length, vocab]. */
  logits: Float32Array;
  vocab: number;
}

/**
 * Every measurement has this one shape, so shard-merge, resume and tests treat them alike.
 * update() is online with memory bounded by the model's width, merge() is exact (Chan/Welford),
 * state() is JSON-serialisable (typed arrays as plain arrays or base64), finish() returns rows.
 * update() and finish() may run work in ONNX Runtime and then return a promise: callers await
 * both (an estimator whose work is pure JS returns plain values, and awaiting them costs nothing).
 */
export interface Estimator<Input, State, Result> {
  readonly name: string;
  update(input: Input): void | Promise<void>;
  merge(other: State): void;
  state(): State;
  finish(): Result | Promise<Result>;
}
