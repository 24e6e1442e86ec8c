/**
 * Prepares a model for a pipeline run by appending (never re-encoding, see builder.ts):
 *  - the captured activation tensors as graph outputs;
 *  - `quantlens/last_logits` = logits[:, -1:, :], so only the predicted position's logits are
 *    copied out of ONNX Runtime (the full [B, T, V] tensor can be hundreds of MB per batch).
 * With left padding the last column is every row's last real token (`Slice`); with `gatherLast`
 *    the logits are gathered at each row's own last real position (LAST_INDEX), for either side.
 */
import { appendGraphFragment, tensor, type GraphFragment } from './builder.ts';
import { blockMomentsFragment } from './block-moments.ts';

export const LAST_LOGITS = 'quantlens/last_logits';

/** int64 [B]: row b's last real position as a flat index b·T + position (see operators/infer.ts). */
export const LAST_INDEX = 'quantlens/last_index';

/** logits[b, lastIndex_b, :] as [B, 1, V]: right-padded rows each end at their own column. */
function gatherLastFragment(logits: string): GraphFragment {
  return {
    initializers: [{ name: 'quantlens/last_shape', ...tensor('int64', [3], BigInt64Array.from([0n, 1n, -1n])) }],
    nodes: [
      { opType: 'Flatten', name: 'quantlens/LogitsRows', inputs: [logits], outputs: ['quantlens/logits_rows'], attrs: { axis: 2 } },
      { opType: 'Gather', name: 'quantlens/LastRows', inputs: ['quantlens/logits_rows', LAST_INDEX], outputs: ['quantlens/last_rows'], attrs: { axis: 0 } },
      { opType: 'Reshape', name: 'quantlens/LastLogits', inputs: ['quantlens/last_rows', 'quantlens/last_shape'], outputs: [LAST_LOGITS] },
    ],
    inputs: [{ name: LAST_INDEX, type: 'int64', dims: ['batch'] }],
  };
}

/** The [batch, seq, width] view of a captured [batch·seq, width] tensor (see `reshape3d`). */
export function reshapedName(tensor: string): string {
  return `quantlens/3d/${tensor}`;
}

/** Reshape each flat tensor to [B, T, -1] with B, T taken from the ids input's runtime shape. */
function reshapeFragment(r: { idsName: string; tensors: string[] } | undefined): GraphFragment {
  if (!r || r.tensors.length === 0) return {};
  return {
    initializers: [{ name: 'quantlens/3d_tail', ...tensor('int64', [1], BigInt64Array.from([-1n])) }],
    nodes: [
      { opType: 'Shape', name: 'quantlens/3d_ids_shape', inputs: [r.idsName], outputs: ['quantlens/3d_ids_shape'] },
      { opType: 'Concat', name: 'quantlens/3d_shape', inputs: ['quantlens/3d_ids_shape', 'quantlens/3d_tail'], outputs: ['quantlens/3d_shape'], attrs: { axis: 0 } },
      ...r.tensors.map((t) => ({ opType: 'Reshape', name: reshapedName(t), inputs: [t, 'quantlens/3d_shape'], outputs: [reshapedName(t)] })),
    ],
  };
}

export function augmentForRun(
  model: Uint8Array,
  opts: {
    captures: string[];
    logitsName?: string;
    /** In-graph moments of these tensors over the real tokens fed per batch (see block-moments.ts). */
    moments?: { tensors: { name: string; width: number }[]; opset: number };
    /** Flat [B·T, D] tensors to expose as reshapedName(t) = [B, T, D]; captures/moments then name those. */
    reshape3d?: { idsName: string; tensors: string[] };
    /** Last logits gathered at LAST_INDEX (fed per batch) instead of column −1: any padding side. */
    gatherLast?: boolean;
  },
): Uint8Array {
  const logits = opts.logitsName ?? 'logits';
  const i64 = (name: string, v: bigint) => ({ name, ...tensor('int64', [1], BigInt64Array.from([v])) });
  const r = reshapeFragment(opts.reshape3d);
  const m: GraphFragment = opts.moments ? blockMomentsFragment(opts.moments.tensors, opts.moments.opset) : {};
  const last: GraphFragment = opts.gatherLast
    ? gatherLastFragment(logits)
    : {
        initializers: [i64('quantlens/last_start', -1n), i64('quantlens/last_end', 9223372036854775807n), i64('quantlens/last_axis', 1n)],
        nodes: [{ opType: 'Slice', name: 'quantlens/LastLogits', inputs: [logits, 'quantlens/last_start', 'quantlens/last_end', 'quantlens/last_axis'], outputs: [LAST_LOGITS] }],
      };
  return appendGraphFragment(model, {
    initializers: [...(last.initializers ?? []), ...(r.initializers ?? []), ...(m.initializers ?? [])],
    nodes: [...(last.nodes ?? []), ...(r.nodes ?? []), ...(m.nodes ?? [])],
    inputs: [...(last.inputs ?? []), ...(m.inputs ?? [])],
    outputs: [{ name: LAST_LOGITS }, ...opts.captures.map((name) => ({ name })), ...(m.outputs ?? [])],
  });
}
