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
