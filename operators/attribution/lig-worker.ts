/**
 * The worker-thread side of lig-parallel.ts: one attribution session at a time of its own (the
 * graph read from the cache the main thread filled, graph-cache.ts), which attributes the length
 * groups it is sent with lig.ts's attributeBatch, exactly as attributeByLength runs a group on one
 * session. A run for another (model, tensor, options) closes the session and opens that one.
 *
 * Messages in: { type: 'run', id, setup, groups: { ids, targets? }[], opts } | { type: 'park' } | { type: 'close' }.
 * Messages out: { type: 'ready' } once the first session is open, { type: 'done', id, groups:
 * { results, warnings }[] }, { type: 'parked' }, { type: 'error', id?, code, message } (the main
 * thread turns it into one error).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attributeBatch, attributeExample, createAttributionSession, releaseAttributionSession, reopenAttributionSession, type AttributionSession, type LigOptions } from './lig.ts';
import { QuantlensError } from '../../core/errors.ts';
import { workerFaultPoint } from '../../core/fault-point.ts';
import type { WorkerSetup, WorkerRun } from './lig-parallel.ts';

const port = parentPort;
if (!port) throw new Error('lig-worker.ts runs in a worker thread (lig-parallel.ts starts it)');

const errorOf = (e: unknown, id?: number) => ({ type: 'error' as const, id, code: e instanceof QuantlensError ? e.code : 'UNSUPPORTED', message: String((e as Error)?.message ?? e) });

/** The session of the last setup, open or parked (closed, reopened from its graph bytes by the next run). */
let current: { key: string; s: AttributionSession; open: boolean } | null = null;

const keyOf = (setup: WorkerSetup) => JSON.stringify([setup.model, setup.tensor, setup.options]);

async function close(): Promise<void> {
  if (current?.open) {
    current.open = false;
    await releaseAttributionSession(current.s).catch(() => undefined);
  }
}

async function sessionFor(setup: WorkerSetup): Promise<AttributionSession> {
  const key = keyOf(setup);
  if (current?.key !== key) {
    await close();
    current = null;
    current = { key, s: await createAttributionSession(setup.model, setup.tensor, setup.options), open: true };
  } else if (!current.open) {
    current.s = await reopenAttributionSession(current.s);
    current.open = true;
  }
  return current.s;
}

// One message at a time, in order: a park's release finishes before the next run reopens.
let queue: Promise<void> = (async () => {
  const setup = workerData as WorkerSetup;
  try {
    const s = await sessionFor(setup);
    // Warm-up on a short row, as the one-session bench does: ORT's first run allocates.
    if (setup.warmUp) await attributeExample(s, { ids: Int32Array.from([1, 2, 3, 4]) }, setup.tensor, { steps: 2, onWarning: () => undefined });
    port.postMessage({ type: 'ready' });
  } catch (e) {
    port.postMessage(errorOf(e));
  }
})();

type Message = WorkerRun | { type: 'park' } | { type: 'close' };
port.on('message', (m: Message) => {
  queue = queue.then(() => handle(m));
});

async function handle(m: Message): Promise<void> {
  if (m.type === 'park' || m.type === 'close') {
    // Between uses the session is closed (its mapped weights and arena freed), as pipelines/salience.ts parks.
    await close();
    // Closing ends the thread here, between native calls (lig-parallel.ts never terminates a busy worker).
    if (m.type === 'close') process.exit(0);
    port!.postMessage({ type: 'parked' });
    return;
  }
  workerFaultPoint('start');
  try {
    const s = await sessionFor(m.setup);
    const groups = [];
    for (const g of m.groups) {
      const warnings: string[] = [];
      const opts: LigOptions = { ...m.opts, targets: g.targets, onWarning: (w) => warnings.push(w) };
      const results = await attributeBatch(s, g.ids.map((ids) => ({ ids })), m.setup.tensor, opts);
      groups.push({ results, warnings });
    }
    const buffers = groups.flatMap((g) => g.results.map((r) => r.attributions.buffer as ArrayBuffer));
    port!.postMessage({ type: 'done', id: m.id, groups }, buffers);
  } catch (e) {
    port!.postMessage(errorOf(e, m.id));
  }
  workerFaultPoint('after');
}
