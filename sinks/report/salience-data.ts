/**
 * Salient-neuron counts per (precision, layer) and the completeness of the attributions behind
 * them, read from summary.json (salience.<precision>.<layer>) or, when the summary lacks them,
 * counted from salience.parquet. Figures and tables read them here so both show the same numbers
 * and the same unconverged flags.
 */
import type { RunData } from './load-run.ts';
import { num } from './load-run.ts';

export interface Completeness { count: number; min: number; median: number; p90: number; max: number; above_threshold: number; unconverged: number }

export interface SalientCount {
  precision: string;
  layer: number;
  /** Neurons salient in at least one example (the union). */
  value: number;
  source: 'summary' | 'salience.parquet';
  /** Attributed examples, when recorded. */
  examples?: number;
  completeness?: Completeness;
}

/** The LIG completeness flag threshold (operators/attribution: 5% relative error). */
export const COMPLETENESS_THRESHOLD = 0.05;

function completenessOf(c: unknown): Completeness | undefined {
  if (!c || typeof c !== 'object') return undefined;
  const o = c as Record<string, unknown>;
  const count = num(o.count);
  if (count === undefined) return undefined;
  const ids = Array.isArray(o.unconverged_example_ids) ? o.unconverged_example_ids.length : undefined;
  const nanIfMissing = (v: unknown) => num(v) ?? NaN;
  return {
    count, min: nanIfMissing(o.min), median: nanIfMissing(o.median), p90: nanIfMissing(o.p90), max: nanIfMissing(o.max),
    above_threshold: num(o.above_threshold) ?? 0, unconverged: ids ?? num(o.above_threshold) ?? 0,
  };
}

function fromSummary(run: RunData): SalientCount[] {
  const out: SalientCount[] = [];
  const s = run.summary?.salience;
  if (!s || typeof s !== 'object') return out;
  for (const [precision, byLayer] of Object.entries(s)) {
    for (const [layer, v] of Object.entries(byLayer ?? {})) {
      const value = num(v?.union_count);
      if (value === undefined || !Number.isFinite(Number(layer))) continue;
      const rec = v as Record<string, unknown>;
      out.push({ precision, layer: Number(layer), value, source: 'summary', examples: num(rec.examples), completeness: completenessOf(rec.completeness) });
    }
  }
  return out;
}

function fromParquet(run: RunData): SalientCount[] {
  const byKey = new Map<string, SalientCount>();
  for (const r of run.salience ?? []) {
    const k = `${r.precision}\u0000${r.layer}`;
    const c = byKey.get(k) ?? { precision: r.precision, layer: r.layer, value: 0, source: 'salience.parquet' as const };
    if (r.salient_examples > 0) c.value++;
    byKey.set(k, c);
  }
  return [...byKey.values()];
}

/** Every (precision, layer) salient count of a run, sorted by layer. */
export function salientCounts(run: RunData): SalientCount[] {
  const s = fromSummary(run);
  return (s.length ? s : fromParquet(run)).sort((a, b) => a.layer - b.layer);
}

/** "⚠3/8" when some attributed examples did not converge, else ''. */
export function unconvergedFlag(c: SalientCount): string {
  const u = c.completeness?.unconverged ?? 0;
  return u > 0 ? `⚠${u}/${c.completeness!.count}` : '';
}
