/**
 * Turn one ORT activation output [B, T, D] of a padded batch (left by default, right when the
 * plan says so) into an ActivationChunk holding only the real (non-pad) tokens, and view a chunk
 * as an Arrow RecordBatch without copying.
 *
 * Memory: for float32 input the ORT output buffer is REUSED. Row b's real tokens are lengths[b]
 * of its T positions, contiguous in [B,T,D] memory, so we move them toward the start of
 * the same buffer with copyWithin (destination never passes the source, so overlap is safe) and
 * return `values` as a subarray view of it. The caller must not read the ORT tensor afterwards,
 * and must not hand that buffer back to ORT (e.g. as a pre-bound output) while the chunk lives.
 * Float16 input (a Uint16Array of half bits) is converted once into a new Float32Array, already
 * compacted, since it has to be widened anyway.
 */
import * as arrow from 'apache-arrow';
import { QuantlensError } from '../core/errors.ts';
import { halfToFloat } from '../onnx/dtypes.ts';
import type { ActivationChunk, Batch } from '../core/types.ts';

export interface ActivationChunkArgs {
  data: Float32Array | Uint16Array;
  dims: readonly number[];
  batch: Batch;
  precision: string;
  layer: number;
  tensor: string;
  /** Where the batch's pads are (InputPlan.padSide); left when absent. */
  padSide?: 'left' | 'right';
}

/** Build the ActivationChunk of non-pad tokens. For float32 input this compacts `data` in place. */
export function activationChunk(args: ActivationChunkArgs): ActivationChunk {
  const { data, dims, batch, precision, layer, tensor } = args;
  const startOf = (len: number) => (args.padSide === 'right' ? 0 : T - len);
  const where = `activation ${tensor} (layer ${layer}, ${precision}, batch ${batch.index})`;
  if (dims.length !== 3) throw new QuantlensError('MODEL', `expected a [batch, seq, width] tensor, got dims [${dims.join(', ')}]`, where);
  const [B, T, D] = dims;
  if (B !== batch.examples.length || T !== batch.seqLen) {
    throw new QuantlensError('MODEL', `tensor dims [${dims.join(', ')}] do not match the batch (${batch.examples.length} rows × ${batch.seqLen} tokens)`, where);
  }
  if (data.length !== B * T * D) throw new QuantlensError('MODEL', `tensor holds ${data.length} values, dims [${dims.join(', ')}] need ${B * T * D}`, where);
  if (!(D > 0)) throw new QuantlensError('MODEL', `activation width must be positive, got ${D}`, where);

  let rows = 0;
  for (let b = 0; b < B; b++) {
    const len = batch.lengths[b];
    const ids = batch.examples[b].ids;
    if (!(len >= 0 && len <= T)) throw new QuantlensError('STATE', `row ${b} length ${len} is outside 0…${T}`, where);
    if (ids.length !== len) throw new QuantlensError('STATE', `row ${b} (example ${batch.examples[b].example_id}) has ${ids.length} token ids but length ${len}`, where);
    rows += len;
  }

  const exampleId = new Int32Array(rows);
  const position = new Int32Array(rows);
  const tokenId = new Int32Array(rows);
  let r = 0;
  for (let b = 0; b < B; b++) {
    const len = batch.lengths[b];
    const ex = batch.examples[b];
    for (let p = 0; p < len; p++, r++) {
      exampleId[r] = ex.example_id;
      position[r] = p;
      tokenId[r] = ex.ids[p];
    }
  }

  let values: Float32Array;
  if (data instanceof Float32Array) {
    let dst = 0;
    for (let b = 0; b < B; b++) {
      const len = batch.lengths[b];
      const src = (b * T + startOf(len)) * D;
      if (src !== dst) data.copyWithin(dst, src, src + len * D);
      dst += len * D;
    }
    values = data.subarray(0, rows * D);
  } else if (data instanceof Uint16Array) {
    values = new Float32Array(rows * D);
    let dst = 0;
    for (let b = 0; b < B; b++) {
      const len = batch.lengths[b];
      const src = (b * T + startOf(len)) * D;
      halfToFloat(data.subarray(src, src + len * D), values.subarray(dst, dst + len * D));
      dst += len * D;
    }
  } else {
    throw new QuantlensError('UNSUPPORTED', `activation data must be float32 or float16 (Uint16Array), got ${(data as object).constructor?.name}`, where);
  }

  return { batchIndex: batch.index, precision, layer, tensor, width: D, rows, values, exampleId, position, tokenId };
}

/** Arrow schema of a chunk of the given width (same for every chunk of a model). */
export function activationSchema(width: number): arrow.Schema {
  return new arrow.Schema([
    new arrow.Field('example_id', new arrow.Int32(), false),
    new arrow.Field('position', new arrow.Int32(), false),
    new arrow.Field('token_id', new arrow.Int32(), false),
    new arrow.Field('layer', new arrow.Int32(), false),
    new arrow.Field('precision', new arrow.Utf8(), false),
    new arrow.Field('values', new arrow.FixedSizeList(width, new arrow.Field('item', new arrow.Float32(), false)), false),
  ]);
}

/** One string repeated `rows` times as Arrow Utf8 data. */
function repeatedUtf8(value: string, rows: number): arrow.Data<arrow.Utf8> {
  const bytes = new TextEncoder().encode(value);
  const data = new Uint8Array(rows * bytes.length);
  const offsets = new Int32Array(rows + 1);
  for (let i = 0; i < rows; i++) {
    data.set(bytes, i * bytes.length);
    offsets[i + 1] = (i + 1) * bytes.length;
  }
  return arrow.makeData({ type: new arrow.Utf8(), length: rows, nullCount: 0, valueOffsets: offsets, data });
}

/**
 * Zero-copy Arrow view of a chunk: the int columns and the values child wrap the chunk's own typed
 * arrays (same ArrayBuffer and byteOffset). `layer` is int32, as in every output table.
 */
export function chunkToRecordBatch(chunk: ActivationChunk): arrow.RecordBatch {
  const { rows, width } = chunk;
  const schema = activationSchema(width);
  const int32 = (a: Int32Array) => arrow.makeData({ type: new arrow.Int32(), length: rows, nullCount: 0, data: a });
  const values = arrow.makeData({
    type: schema.fields[5].type as arrow.FixedSizeList<arrow.Float32>,
    length: rows,
    nullCount: 0,
    child: arrow.makeData({ type: new arrow.Float32(), length: rows * width, nullCount: 0, data: chunk.values }),
  });
  const children = [int32(chunk.exampleId), int32(chunk.position), int32(chunk.tokenId), int32(new Int32Array(rows).fill(chunk.layer)), repeatedUtf8(chunk.precision, rows), values];
  const struct = arrow.makeData({ type: new arrow.Struct(schema.fields), length: rows, nullCount: 0, children });
  return new arrow.RecordBatch(schema, struct);
}
