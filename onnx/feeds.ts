/**
 * The inputs of a decoder-only ONNX model, discovered from the session, and the tensors that feed
 * one padded batch through it in a single pass (no KV cache: past inputs are fed empty).
 *
 * Left padding (the default): row b's real tokens sit in the last lengths[b] columns, so the
 * predicted position is column seqLen-1 for every row. Right padding (real tokens first) is for
 * attention kernels that assume it, such as com.microsoft GroupQueryAttention, which reads each
 * row's length from the mask and places its tokens at 0..len-1 (see paddingSideFor).
 * attention_mask is 1 on real tokens and 0 on pads, and position_ids count real tokens from 0,
 * exactly as if each row ran alone. `seqlens_k` (older onnxruntime-genai exports) is each row's
 * real length - 1, `total_sequence_length` the padded length.
 */
import ort from 'onnxruntime-node';
import { QuantlensError } from '../core/errors.ts';

export type IntType = 'int32' | 'int64';
export type PastType = 'float32' | 'float16';

export interface PastInput {
  name: string;
  type: PastType;
  /** Shape from the graph: numbers are fixed, strings are symbolic (e.g. 'batch_size', 'past_sequence_length'). */
  dims: (number | string)[];
}

export type PadSide = 'left' | 'right';

/** Values for past dims a graph leaves symbolic, in onnxruntime-genai's [batch, kv_heads, past, head] layout. */
export interface PastHints {
  kvHeads?: number;
  headSize?: number;
}

export interface InputPlan {
  /** Where pads go; left (also when absent) unless the model's attention needs its real tokens first. */
  padSide?: PadSide;
  idsName: string;
  idsType: IntType;
  maskName?: string;
  maskType?: IntType;
  positionName?: string;
  positionType?: IntType;
  pastInputs: PastInput[];
  /** Optimum merged decoders switch between with/without-past branches with a bool input. */
  useCacheBranchName?: string;
  /** onnxruntime-genai style GroupQueryAttention inputs: int32 [B] (length - 1) and int32 scalar. */
  seqlensKName?: string;
  totalSequenceLengthName?: string;
  /** transformers' cache slots being written: 0..S−1 with an empty cache (int64 [S]). */
  cachePositionName?: string;
  cachePositionType?: IntType;
}

export interface FeedBatch {
  seqLen: number;
  lengths: Int32Array;
  /** Row b's real tokens (lengths[b] of them), unpadded. */
  ids: Int32Array[];
}

type Metadata = { name: string; isTensor: boolean; type?: string; shape?: readonly (number | string)[] };

const PAST_NAME = /^past/;

function intTypeOf(m: Metadata, where?: string): IntType {
  if (m.type === 'int32' || m.type === 'int64') return m.type;
  throw new QuantlensError('MODEL', `model input "${m.name}" has type ${m.type}, expected int32 or int64`, where);
}

/** Classify the session's inputs; anything else is refused rather than fed a guess. */
export function planInputs(
  session: Pick<ort.InferenceSession, 'inputMetadata'>,
  where?: string,
  opts: { padSide?: PadSide; past?: PastHints } = {},
): InputPlan {
  const metadata = session.inputMetadata as readonly Metadata[];
  const plan: Partial<InputPlan> & { pastInputs: PastInput[] } = { pastInputs: [], padSide: opts.padSide ?? 'left' };
  for (const m of metadata) {
    if (m.name === 'input_ids') {
      plan.idsName = m.name;
      plan.idsType = intTypeOf(m, where);
    } else if (m.name === 'attention_mask') {
      plan.maskName = m.name;
      plan.maskType = intTypeOf(m, where);
    } else if (m.name === 'position_ids') {
      plan.positionName = m.name;
      plan.positionType = intTypeOf(m, where);
    } else if (m.name === 'use_cache_branch' && m.type === 'bool') {
      plan.useCacheBranchName = m.name;
    } else if (m.name === 'seqlens_k' && m.type === 'int32') {
      plan.seqlensKName = m.name;
    } else if (m.name === 'total_sequence_length' && m.type === 'int32') {
      plan.totalSequenceLengthName = m.name;
    } else if (m.name === 'cache_position' && (m.shape ?? []).length === 1) {
      plan.cachePositionName = m.name;
      plan.cachePositionType = intTypeOf(m, where);
    } else if (PAST_NAME.test(m.name)) {
      if (m.type !== 'float32' && m.type !== 'float16') {
        throw new QuantlensError('MODEL', `model input "${m.name}" has type ${m.type}, expected float32 or float16`, where);
      }
      const dims = fillPastDims([...(m.shape ?? [])], opts.past);
      pastAxes(m.name, dims, where); // validate now, not at the first batch
      plan.pastInputs.push({ name: m.name, type: m.type, dims });
    } else {
      const shape = `${m.type ?? '?'} [${(m.shape ?? []).join(', ')}]`;
      throw new QuantlensError(
        'MODEL',
        `model input "${m.name}" is not understood (${shape}): quantlens feeds input_ids, attention_mask, position_ids, seqlens_k, total_sequence_length, cache_position and empty past_* caches, not static caches or recurrent state`,
        where,
      );
    }
  }
  if (plan.idsName === undefined) throw new QuantlensError('MODEL', `model has no "input_ids" input`, where);
  return plan as InputPlan;
}

/**
 * onnxruntime-genai writes past inputs as [batch_size, kv_heads, past_sequence_length, head_size]
 * with head_size (and sometimes kv_heads) symbolic, e.g. `kv_cache_dim`. With hints from
 * genai_config.json or the graph's GroupQueryAttention, a 4-D past's axis 1 is the kv head count
 * and axis 3 the head size; only dims that are neither batch nor past are filled.
 */
function fillPastDims(dims: (number | string)[], hints?: PastHints): (number | string)[] {
  if (!hints || dims.length !== 4) return dims;
  const isBatch = (d: number | string) => typeof d === 'string' && /batch/i.test(d);
  const isPast = (d: number | string) => typeof d === 'string' && /past|seq|len/i.test(d);
  if (!isBatch(dims[0]) || !isPast(dims[2])) return dims;
  const out = [...dims];
  if (typeof out[1] === 'string' && hints.kvHeads) out[1] = hints.kvHeads;
  if (typeof out[3] === 'string' && hints.headSize) out[3] = hints.headSize;
  return out;
}

/**
 * Which axes of a past tensor are batch and past-sequence. Named dims are read by name; exports
 * with anonymous dims fall back to "first symbolic = batch, last symbolic = past length".
 */
function pastAxes(name: string, dims: (number | string)[], where?: string): { batch: number; past: number } {
  const symbolic = dims.flatMap((d, i) => (typeof d === 'string' ? [i] : []));
  const named = (re: RegExp) => symbolic.filter((i) => re.test(String(dims[i])));
  const batchNamed = named(/batch/i);
  const pastNamed = named(/past|seq|len/i).filter((i) => !batchNamed.includes(i));
  let axes: { batch: number; past: number } | null = null;
  if (batchNamed.length === 1 && pastNamed.length === 1) axes = { batch: batchNamed[0], past: pastNamed[0] };
  else if (symbolic.length === 2) axes = { batch: symbolic[0], past: symbolic[1] };
  // Any other symbolic dim (e.g. a symbolic head count) has no value we could feed.
  if (axes && symbolic.length === 2) return axes;
  throw new QuantlensError('MODEL', `model input "${name}" has shape [${dims.join(',')}]; cannot tell its batch and past-length axes`, where);
}

function intTensor(type: IntType, values: Int32Array, dims: number[]): ort.Tensor {
  if (type === 'int32') return new ort.Tensor('int32', values, dims);
  const big = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) big[i] = BigInt(values[i]);
  return new ort.Tensor('int64', big, dims);
}

/** Column of row b's first real token in a padded batch of length seqLen. */
export function rowStart(plan: Pick<InputPlan, 'padSide'>, seqLen: number, length: number): number {
  return plan.padSide === 'right' ? 0 : seqLen - length;
}

export function buildFeeds(plan: InputPlan, batch: FeedBatch, padId: number): Record<string, ort.Tensor> {
  const B = batch.ids.length;
  const S = batch.seqLen;
  if (batch.lengths.length !== B) throw new RangeError(`batch has ${B} rows but ${batch.lengths.length} lengths`);
  const ids = new Int32Array(B * S).fill(padId);
  const mask = new Int32Array(B * S);
  const positions = new Int32Array(B * S);
  for (let b = 0; b < B; b++) {
    const len = batch.lengths[b];
    if (batch.ids[b].length !== len || len > S || len < 1) {
      throw new RangeError(`row ${b}: ${batch.ids[b].length} ids, length ${len}, seqLen ${S}`);
    }
    const start = rowStart(plan, S, len);
    ids.set(batch.ids[b], b * S + start);
    mask.fill(1, b * S + start, b * S + start + len);
    // Real tokens get 0..len-1 as if the row ran alone; left pads get 0 (cumsum(mask) - 1 clipped),
    // right pads continue counting (masked, so their value does not matter, but stays in range).
    for (let j = 0; j < S; j++) positions[b * S + j] = Math.max(0, j - start);
  }

  const feeds: Record<string, ort.Tensor> = {};
  feeds[plan.idsName] = intTensor(plan.idsType, ids, [B, S]);
  // Past length is 0, so a mask over past+current (gpt2's [batch,total_seq]) is [B, S] too.
  if (plan.maskName) feeds[plan.maskName] = intTensor(plan.maskType!, mask, [B, S]);
  if (plan.positionName) feeds[plan.positionName] = intTensor(plan.positionType!, positions, [B, S]);
  if (plan.useCacheBranchName) feeds[plan.useCacheBranchName] = new ort.Tensor('bool', new Uint8Array([0]), [1]);
  if (plan.seqlensKName) feeds[plan.seqlensKName] = new ort.Tensor('int32', Int32Array.from(batch.lengths, (l) => l - 1), [B]);
  if (plan.totalSequenceLengthName) feeds[plan.totalSequenceLengthName] = new ort.Tensor('int32', Int32Array.of(S), []);
  if (plan.cachePositionName) feeds[plan.cachePositionName] = intTensor(plan.cachePositionType!, Int32Array.from({ length: S }, (_, j) => j), [S]);
  for (const p of plan.pastInputs) {
    const { batch: batchAxis, past: pastAxis } = pastAxes(p.name, p.dims);
    const dims = p.dims.map((d, i) => (i === batchAxis ? B : i === pastAxis ? 0 : (d as number)));
    // ORT node takes float16 as raw IEEE half bits in a Uint16Array.
    feeds[p.name] = p.type === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
  }
  return feeds;
}
