/**
 * LIG for examples of mixed lengths, grouped by exact length: every row of an ONNX Runtime run
 * has the same number of real tokens, so nothing is spent on padding (an inference batch padded
 * to its longest prompt would make every (example, α) row pay for the longest), and each result
 * is the per-example computation itself, not a left-padded variant of it. Rows still batch
 * across the examples of a group and across α, up to the memory budget (lig.ts).
 */
import { attributeBatch, type AttributionSession, type LigOptions, type LigResult } from './lig.ts';

export async function attributeByLength(
  s: AttributionSession,
  examples: { ids: Int32Array }[],
  layerTensor: string,
  opts: LigOptions = {},
): Promise<LigResult[]> {
  const groups = new Map<number, number[]>();
  examples.forEach((e, i) => {
    const g = groups.get(e.ids.length);
    if (g) g.push(i);
    else groups.set(e.ids.length, [i]);
  });
  const out = new Array<LigResult>(examples.length);
  for (const len of [...groups.keys()].sort((a, b) => a - b)) {
    const idx = groups.get(len)!;
    const targets = opts.targets ? idx.map((i) => opts.targets![i]) : undefined;
    const rs = await attributeBatch(s, idx.map((i) => examples[i]), layerTensor, { ...opts, targets });
    idx.forEach((i, k) => (out[i] = rs[k]));
  }
  return out;
}
