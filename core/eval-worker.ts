/**
 * A worker thread for the estimators' parallel kernels (calibration-bootstrap-parallel.ts,
 * correlation-finish-parallel.ts): it runs source the caller assembles from its own functions, so
 * both threads run the same code on the same numbers. Eval'd source because a .ts worker file
 * does not load under tsx on Node 20.
 */
import { Worker } from 'node:worker_threads';

/**
 * Starts `source` in a worker, unref'd so it never keeps the process alive; null when a worker
 * cannot start. Its errors are ignored: the callers compute on their own thread whatever the
 * worker leaves undone.
 */
export function startEvalWorker(source: string): Worker | null {
  try {
    const worker = new Worker(source, { eval: true });
    worker.unref();
    worker.on('error', () => undefined);
    return worker;
  } catch {
    return null;
  }
}
