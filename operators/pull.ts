/**
 * Backpressure for RxJS. RxJS pushes; a dataset larger than memory must be pulled. `pull`
 * turns an async iterable into an Observable that asks the iterator for its next item only when
 * `demand$` emits, so at most (initial demand + acknowledgements) items are ever in flight.
 * The last stage of the graph calls `ack()` when an item is fully consumed.
 */
import { Observable, Subject, concat, range } from 'rxjs';

export interface Demand {
  demand$: Observable<unknown>;
  /** Signal that one item left the pipeline (its results are in the estimators and sinks). */
  ack(): void;
}

export function createDemand(inFlight: number): Demand {
  const acks = new Subject<void>();
  return { demand$: concat(range(0, inFlight), acks), ack: () => acks.next() };
}

export function pull<T>(source: AsyncIterable<T>, demand$: Observable<unknown>): Observable<T> {
  return new Observable<T>((subscriber) => {
    const it = source[Symbol.asyncIterator]();
    let wanted = 0;
    let pumping = false;
    let closed = false;
    const pump = async () => {
      if (pumping) return;
      pumping = true;
      try {
        while (wanted > 0 && !closed) {
          wanted--;
          const r = await it.next();
          if (closed) break;
          if (r.done) {
            closed = true;
            subscriber.complete();
            break;
          }
          subscriber.next(r.value);
        }
      } catch (e) {
        closed = true;
        subscriber.error(e);
      } finally {
        pumping = false;
      }
    };
    const sub = demand$.subscribe(() => {
      wanted++;
      void pump();
    });
    return () => {
      closed = true;
      sub.unsubscribe();
      void it.return?.();
    };
  });
}
