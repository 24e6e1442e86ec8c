/**
 * The cut tensors of a batch's examples (onnx/backward/prefix-split.ts), taken from the activation
 * run and fed to the suffix graph: each example's own row of every tensor with a batch axis, and
 * one copy of those without (the split checked they do not change with the batch). An integrand
 * run of R rows gets, per tensor, the rows' examples' slices stacked along the batch axis. A flat
 * [batch·sequence, …] tensor's row is its S consecutive entries along that axis.
 */
import ort from 'onnxruntime-node';
import { QuantlensError } from '../../core/errors.ts';
import { aroundAxis, type CutTensor } from '../../onnx/backward/prefix-split.ts';

type Data = Float32Array | Uint16Array | Float64Array;

interface Layout {
  dims: number[];
  /** Elements before / after the batch axis (row-major). */
  outer: number;
  inner: number;
}

function layoutOf(dims: readonly number[], axis: number): Layout {
  return { dims: [...dims], ...aroundAxis(dims, axis) };
}

export class CutValues {
  /** Per tensor: per example its row (outer × inner elements); or the shared tensor. */
  private rows: (Data | undefined)[][];
  private shared: (ort.Tensor | undefined)[];
  private layouts: (Layout | undefined)[];

  constructor(
    readonly cut: CutTensor[],
    examples: number,
    /** Tokens per row of the batch (the span of a row along a flat batch axis). */
    readonly seqLen: number,
    from?: { rows: (Data | undefined)[][]; shared: (ort.Tensor | undefined)[]; layouts: (Layout | undefined)[] },
  ) {
    this.rows = from?.rows ?? cut.map(() => new Array<Data | undefined>(examples));
    this.shared = from?.shared ?? cut.map(() => undefined);
    this.layouts = from?.layouts ?? cut.map(() => undefined);
  }

  /** Rows `first`… of a run's outputs are examples first…first+n-1 (the run may hold more rows after them). */
  take(out: ort.InferenceSession.OnnxValueMapType, first: number, n: number): void {
    this.cut.forEach((c, k) => {
      const t = out[c.name];
      if (c.batchAxis === null) {
        this.shared[k] ??= t;
        return;
      }
      const span = c.flat ? this.seqLen : 1;
      const L = layoutOf(t.dims, c.batchAxis);
      const D = t.dims[c.batchAxis];
      this.layouts[k] ??= L;
      const data = t.data as Data;
      const block = span * L.inner;
      for (let i = 0; i < n; i++) {
        const row = new (data.constructor as new (n: number) => Data)(L.outer * block);
        for (let o = 0; o < L.outer; o++) row.set(data.subarray(o * D * L.inner + i * block, o * D * L.inner + (i + 1) * block), o * block);
        this.rows[k][first + i] = row;
      }
    });
  }

  /** The same values for the examples `idx` (renumbered 0…). */
  subset(idx: number[]): CutValues {
    return new CutValues(this.cut, idx.length, this.seqLen, { rows: this.rows.map((r) => idx.map((i) => r[i])), shared: this.shared, layouts: this.layouts });
  }

  /** Feeds of an integrand run whose row r is of example examples[r]. */
  feeds(examples: number[]): Record<string, ort.Tensor> {
    const R = examples.length;
    const feeds: Record<string, ort.Tensor> = {};
    this.cut.forEach((c, k) => {
      if (c.batchAxis === null) {
        feeds[c.name] = this.shared[k]!;
        return;
      }
      const L = this.layouts[k]!;
      const first = this.rows[k][examples[0]];
      if (!first) throw new QuantlensError('STATE', `cut tensor "${c.name}" was not fetched for example ${examples[0]}`);
      const span = c.flat ? this.seqLen : 1;
      const block = span * L.inner;
      const out = new (first.constructor as new (n: number) => Data)(R * L.outer * block);
      examples.forEach((e, r) => {
        const row = this.rows[k][e]!;
        for (let o = 0; o < L.outer; o++) out.set(row.subarray(o * block, (o + 1) * block), (o * R + r) * block);
      });
      const dims = L.dims.map((d, i) => (i === c.batchAxis ? R * span : d));
      feeds[c.name] = new ort.Tensor(c.type as 'float32', out as Float32Array, dims);
    });
    return feeds;
  }
}
