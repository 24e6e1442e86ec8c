/**
 * predictions.parquet read back column by column into compact typed columns, for what the end
 * of a run computes from it (calibration, the report's flips and fallbacks). One row group is
 * decoded at a time and no row objects are made: at 100k examples × precisions a row object
 * each (≈ 100 bytes with its fields) was the largest thing the end of a run held, where these
 * columns take 4–8 bytes per field and row. Strings are stored as indices into their distinct
 * values (precisions, labels, vocabulary pieces: few), in order of first appearance.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from 'hyparquet';
import type { ColumnData } from 'hyparquet';
import { QuantlensError } from '../core/errors.ts';
import { rowGroupRanges } from './parquet-row-groups.ts';

export type PredictionField = 'example_id' | 'precision' | 'gold' | 'predicted_token_id' | 'predicted_token' | 'confidence' | 'correct';

/** One row, as the few rows a table shows are materialised. */
export interface PredictionRow { example_id: number; precision: string; gold: string; predicted_token_id: number; predicted_token: string; confidence: number; correct: boolean }

/** A string column as one index per row into its distinct values, in order of first appearance. */
export class InternedStrings {
  readonly values: string[] = [];
  readonly ids: Uint32Array;
  private readonly index = new Map<string, number>();
  constructor(rows: number) {
    this.ids = new Uint32Array(rows);
  }
  set(row: number, v: string): void {
    let k = this.index.get(v);
    if (k === undefined) {
      k = this.values.length;
      this.values.push(v);
      this.index.set(v, k);
    }
    this.ids[row] = k;
  }
  at(row: number): string {
    return this.values[this.ids[row]];
  }
  /** The index of `v`, or -1 when no row holds it. */
  indexOf(v: string): number {
    return this.index.get(v) ?? -1;
  }
}

/** The fields asked for, one typed column each; the others are absent. */
export class PredictionColumns {
  readonly exampleId?: Int32Array;
  readonly predictedTokenId?: Int32Array;
  readonly confidence?: Float64Array;
  readonly correct?: Uint8Array;
  readonly precision?: InternedStrings;
  readonly gold?: InternedStrings;
  readonly predictedToken?: InternedStrings;

  constructor(readonly length: number, fields: readonly PredictionField[]) {
    const has = (f: PredictionField) => fields.includes(f);
    if (has('example_id')) this.exampleId = new Int32Array(length);
    if (has('predicted_token_id')) this.predictedTokenId = new Int32Array(length);
    if (has('confidence')) this.confidence = new Float64Array(length);
    if (has('correct')) this.correct = new Uint8Array(length);
    if (has('precision')) this.precision = new InternedStrings(length);
    if (has('gold')) this.gold = new InternedStrings(length);
    if (has('predicted_token')) this.predictedToken = new InternedStrings(length);
  }

  /** Row `i` as an object (fields not read are undefined). */
  row(i: number): PredictionRow {
    return {
      example_id: this.exampleId?.[i],
      precision: this.precision?.at(i),
      gold: this.gold?.at(i),
      predicted_token_id: this.predictedTokenId?.[i],
      predicted_token: this.predictedToken?.at(i),
      confidence: this.confidence?.[i],
      correct: this.correct ? this.correct[i] === 1 : undefined,
    } as PredictionRow;
  }

  /** Row indices whose precision is `p`, in file order. */
  rowsOf(p: string): number[] {
    const k = this.precision?.indexOf(p) ?? -1;
    const out: number[] = [];
    if (k < 0) return out;
    const ids = this.precision!.ids;
    for (let i = 0; i < this.length; i++) if (ids[i] === k) out.push(i);
    return out;
  }

  /** Rows [at, at + count) of `field` from a decoded page, starting at its value `from`. */
  put(field: PredictionField, at: number, data: ArrayLike<unknown>, from: number, count: number): void {
    const typed = field === 'example_id' ? this.exampleId : field === 'predicted_token_id' ? this.predictedTokenId : field === 'confidence' ? this.confidence : undefined;
    if (typed) {
      for (let i = 0; i < count; i++) typed[at + i] = Number(data[from + i]);
      return;
    }
    if (field === 'correct') {
      for (let i = 0; i < count; i++) this.correct![at + i] = data[from + i] ? 1 : 0;
      return;
    }
    const strings = field === 'precision' ? this.precision! : field === 'gold' ? this.gold! : this.predictedToken!;
    for (let i = 0; i < count; i++) strings.set(at + i, data[from + i] as string);
  }
}

/** `fields` of every row of a predictions file, read one row group at a time. */
export async function readPredictionColumns(file: string, fields: readonly PredictionField[]): Promise<PredictionColumns> {
  try {
    const buf = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buf);
    const out = new PredictionColumns(Number(metadata.num_rows), fields);
    for (const { rowStart, rowEnd } of rowGroupRanges(metadata)) {
      const onChunk = (c: ColumnData) => {
        // A chunk may hold rows outside the group asked for (whole pages): keep the group's.
        const from = Math.max(c.rowStart, rowStart);
        const to = Math.min(c.rowEnd, rowEnd);
        if (to > from) out.put(c.columnName as PredictionField, from, c.columnData, from - c.rowStart, to - from);
      };
      await parquetRead({ file: buf, metadata, columns: [...fields], rowStart, rowEnd, onChunk });
    }
    return out;
  } catch (e) {
    throw new QuantlensError('IO', `cannot read predictions (${(e as Error).message.split('\n')[0]})`, file, { cause: e });
  }
}
