/**
 * Where a run's time goes, measured at the stage boundaries of the graph itself (no method is
 * patched): an async-iterator stage is timed inside each of its next() calls (inclusive of the
 * stages it pulls from, so exclusive time is the difference of neighbours), and an RxJS stage by
 * `tap` marks as each batch passes a boundary. With one batch in flight (assemble's inFlight: 1)
 * the stages run strictly one after another, so the marks split the stream exactly.
 */
import { tap, type MonoTypeOperatorFunction } from 'rxjs';

export class StageClock {
  /** Milliseconds inside each timed iterator's next(), inclusive of its sources. */
  readonly iteratorMs = new Map<string, number>();
  /** Per boundary, the time each item passed it, in order. */
  readonly marks = new Map<string, number[]>();

  /** The same items, with the time spent producing each one added under `stage`. */
  iterable<T>(stage: string, source: AsyncIterable<T>): AsyncIterable<T> {
    const account = this.iteratorMs;
    return {
      [Symbol.asyncIterator]() {
        const it = source[Symbol.asyncIterator]();
        return {
          async next() {
            const t0 = performance.now();
            try {
              return await it.next();
            } finally {
              account.set(stage, (account.get(stage) ?? 0) + performance.now() - t0);
            }
          },
          async return(value?: unknown) {
            return (await it.return?.(value)) ?? { done: true as const, value: undefined };
          },
        };
      },
    };
  }

  /** A tap recording when each item passes the boundary `point`. */
  mark<T>(point: string): MonoTypeOperatorFunction<T> {
    const times = this.marks.get(point) ?? [];
    this.marks.set(point, times);
    return tap(() => times.push(performance.now()));
  }

  /**
   * Σ over items of (time at `to` − time at `from`), milliseconds: the stage between two marks
   * when items pass one at a time.
   */
  between(from: string, to: string): number {
    const a = this.marks.get(from) ?? [];
    const b = this.marks.get(to) ?? [];
    let ms = 0;
    for (let i = 0; i < Math.min(a.length, b.length); i++) ms += b[i] - a[i];
    return ms;
  }
}
