/**
 * Shared helpers of the benchmarks: robust summaries (median), A/B alternation, method wrapping
 * that accumulates wall time per category, a plain-text table, peak RSS from `/usr/bin/time -v`,
 * and a deterministic synthetic JSONL dataset. Benchmarks report numbers; nothing here asserts.
 */
import { createWriteStream } from 'node:fs';
import { mulberry32 } from '../core/random.ts';

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Run every task once per round for `rounds` rounds, rotating which goes first (A,B then B,A for
 * two tasks; A,B,C then B,C,A then C,A,B for three) so slow drift — other load, heat, caches —
 * falls on each task alike. Returns each round's results by task name, plus the order it ran in.
 */
export async function roundRobin<T>(rounds: number, tasks: Record<string, (round: number) => Promise<T>>): Promise<{ order: string[]; results: Record<string, T> }[]> {
  const names = Object.keys(tasks);
  if (names.length === 0) throw new RangeError('roundRobin needs at least one task');
  const out: { order: string[]; results: Record<string, T> }[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length]);
    const results: Record<string, T> = {};
    for (const name of order) results[name] = await tasks[name](r);
    out.push({ order, results });
  }
  return out;
}

/** Accumulated milliseconds and call counts per category. */
export class TimeAccount {
  readonly ms = new Map<string, number>();
  readonly calls = new Map<string, number>();

  add(category: string, ms: number): void {
    this.ms.set(category, (this.ms.get(category) ?? 0) + ms);
    this.calls.set(category, (this.calls.get(category) ?? 0) + 1);
  }

  get(category: string): number {
    return this.ms.get(category) ?? 0;
  }

  /** Sum over categories whose name starts with `prefix`. */
  sum(prefix = ''): number {
    let s = 0;
    for (const [k, v] of this.ms) if (k.startsWith(prefix)) s += v;
    return s;
  }
}

/**
 * Replace `target[method]` with a wrapper that adds its wall time to `account` under `category`.
 * A method returning a promise is timed until the promise settles. Returns the function that
 * restores the original. Wrapping a prototype times every instance.
 */
export function wrapMethod(target: object, method: string, account: TimeAccount, category: string): () => void {
  const host = target as Record<string, unknown>;
  const original = host[method];
  if (typeof original !== 'function') throw new TypeError(`${method} is not a function on the target`);
  const had = Object.prototype.hasOwnProperty.call(host, method);
  host[method] = function (this: unknown, ...args: unknown[]) {
    const t0 = performance.now();
    let result: unknown;
    try {
      result = (original as (...a: unknown[]) => unknown).apply(this, args);
    } catch (e) {
      account.add(category, performance.now() - t0);
      throw e;
    }
    if (result && typeof (result as Promise<unknown>).then === 'function') {
      return (result as Promise<unknown>).finally(() => account.add(category, performance.now() - t0));
    }
    account.add(category, performance.now() - t0);
    return result;
  };
  return () => {
    if (had) host[method] = original;
    else delete host[method];
  };
}

export interface Column {
  title: string;
  /** Numbers read best right-aligned; default left. */
  align?: 'left' | 'right';
}

/** A plain-text table: header, a rule, rows; every column as wide as its widest cell. */
export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  for (const r of rows) if (r.length !== columns.length) throw new RangeError(`row has ${r.length} cells, table has ${columns.length} columns`);
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (columns[i].align === 'right' ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.title)), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Fixed decimals, or '–' for a missing value. */
export function fixed(x: number | null | undefined, digits: number): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
}

export function percent(share: number | null | undefined, digits = 1): string {
  return share === null || share === undefined || !Number.isFinite(share) ? '–' : `${(share * 100).toFixed(digits)} %`;
}

/** "Maximum resident set size (kbytes): N" from GNU time -v output, in KiB; null when absent. */
export function parseMaxRssKiB(timeVerboseOutput: string): number | null {
  const m = /Maximum resident set size \(kbytes\):\s*(\d+)/.exec(timeVerboseOutput);
  return m ? Number(m[1]) : null;
}

/** Deterministic uniforms in [0, 1) (the project's one seeded PRNG), so every run writes the same dataset. */
export const lcg = mulberry32;

/** Words the demo tokenizer mostly has whole pieces for, plus a few it spells out. */
const WORDS = ['the', 'is', 'of', 'a', 'bigger', 'smaller', 'than', 'number', 'even', 'odd', 'plus', 'minus', 'equal', 'with', 'or', 'only', 'sun', 'water', 'cat', 'moon'];

export interface SyntheticOptions {
  /** Words per prompt, uniform in [minWords, maxWords]. */
  minWords: number;
  maxWords: number;
  seed?: number;
}

/** The synthetic records (prompt, gold), generated lazily in a fixed order from the seed. */
export function* syntheticRecords(n: number, opts: SyntheticOptions): Generator<{ prompt: string; gold: string }> {
  const rnd = lcg(opts.seed ?? 1);
  for (let i = 0; i < n; i++) {
    const k = opts.minWords + Math.floor(rnd() * (opts.maxWords - opts.minWords + 1));
    const words: string[] = [];
    for (let w = 0; w < k; w++) words.push(WORDS[Math.floor(rnd() * WORDS.length)]);
    yield { prompt: words.join(' '), gold: rnd() < 0.5 ? 'True' : 'False' };
  }
}

/** Write `n` synthetic records as JSONL, streamed (100k records never sit in memory as one string). */
export async function writeSyntheticJsonl(file: string, n: number, opts: SyntheticOptions): Promise<void> {
  const out = createWriteStream(file);
  const done = new Promise<void>((resolve, reject) => {
    out.on('error', reject);
    out.on('finish', resolve);
  });
  for (const r of syntheticRecords(n, opts)) {
    if (!out.write(JSON.stringify(r) + '\n')) await new Promise((res) => out.once('drain', res));
  }
  out.end();
  await done;
}

/** Seconds → "12.3 s" / "2.1 min". */
export function duration(seconds: number): string {
  return seconds < 120 ? `${seconds.toFixed(1)} s` : `${(seconds / 60).toFixed(1)} min`;
}

/**
 * One goal of an issue as the bench measured it. Every section returns its goals under `goals`
 * (scripts: in the JSON they write to $QUANTLENS_BENCH_OUT); bench/run.ts prints them together and
 * writes them to runs/bench/results.json, so met/missed is read from one list.
 */
export interface BenchGoal {
  /** What is measured, e.g. "pipeline ÷ bare session.run, demo bench model". */
  goal: string;
  measured: number;
  comparison: '>=' | '<=';
  target: number;
  met: boolean;
  /** Unit or how it was measured, e.g. "median of 3 rounds". */
  detail?: string;
}

export function benchGoal(goal: string, measured: number, comparison: '>=' | '<=', target: number, detail?: string): BenchGoal {
  const met = Number.isFinite(measured) && (comparison === '>=' ? measured >= target : measured <= target);
  return { goal, measured, comparison, target, met, ...(detail ? { detail } : {}) };
}
