/**
 * Named points where the fault-injection tests (test/faults/) kill the process, so that "killed
 * while writing X" is reproducible instead of a race against a timer. Inactive unless the
 * environment sets QUANTLENS_FAULT=kill:<file-name substring>:<phase>[:<nth hit>], e.g.
 * `kill:checkpoint.json:written:3` = SIGKILL the third time checkpoint.json's bytes are written
 * but not yet renamed into place. Phases: `written` (temporary complete) and `renamed`.
 */
let hits = 0;

export function faultPoint(phase: 'written' | 'renamed', file: string): void {
  const spec = process.env.QUANTLENS_FAULT;
  if (!spec || !spec.startsWith('kill:')) return;
  const [, name, at, nth] = spec.split(':');
  if (at !== phase || !file.split(/[\\/]/).pop()!.includes(name)) return;
  if (++hits >= Number(nth ?? 1)) process.kill(process.pid, 'SIGKILL');
}

let workerRuns = 0;

/**
 * An attribution worker thread's fault point (operators/attribution/lig-worker.ts), inactive unless
 * QUANTLENS_FAULT=worker:<exit|throw>:<when>[:<nth run>]: on its nth run request (1 if omitted)
 * the worker ends its thread with exit code 70 (`exit`) or throws an uncaught error (`throw`),
 * either at `start` (before attributing) or `after` (once its reply is posted, so the pool sees
 * the thread gone while idle). Each worker thread counts its own runs.
 */
export function workerFaultPoint(when: 'start' | 'after'): void {
  const spec = process.env.QUANTLENS_FAULT;
  if (!spec || !spec.startsWith('worker:')) return;
  const [, how, at, nth] = spec.split(':');
  if (when === 'start') workerRuns++;
  if (at !== when) return;
  if (workerRuns !== Number(nth ?? 1)) return;
  if (how === 'exit') process.exit(70);
  if (how === 'throw') setImmediate(() => { throw new Error(`QUANTLENS_FAULT ${spec}`); });
}
