/**
 * The progress line: drawn as soon as a phase starts (before any work item finishes), with a
 * percentage and an ETA; any other write to the terminal (a warning, Ctrl-C's message) first ends
 * the line with a newline; done() leaves the last state on its own line and restores the stream.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Progress, endProgressLines } from '../../pipelines/progress.ts';

function fakeTty() {
  let text = '';
  const stream = { isTTY: true, write: (s: string) => ((text += s), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => text };
}

/** What a terminal shows: \r returns to the line start, ESC[K erases to its end. */
function screen(raw: string): string[] {
  const lines: string[] = [''];
  for (const part of raw.split(/(\r|\n|\x1b\[K)/)) {
    if (part === '\n') lines.push('');
    else if (part === '\r' || part === '\x1b[K') lines[lines.length - 1] = part === '\r' ? '\u0000' : '';
    else if (part) lines[lines.length - 1] = lines[lines.length - 1].replace('\u0000', '') + part;
  }
  return lines.map((l) => l.replace('\u0000', ''));
}

test('drawn at once, with the phase, a percentage and an ETA placeholder', () => {
  const t = fakeTty();
  const p = new Progress(200, { stream: t.stream, phase: 'attribution' });
  assert.equal(screen(t.text()), ['attribution: 0/200 examples · 0% · 0 s · ETA …']);
  for (let k = 0; k < 3; k++) (p as any).draw(); // the 1 s timer's redraws
  assert.not.ok(t.text().includes('\n'), 'redraws rewrite the line in place');
  p.note('attributing 2/9');
  assert.match(screen(t.text()).at(-1)!, / · attributing 2\/9$/);
  (p as any).lastLog = 0; // past the 100 ms redraw throttle
  p.tick(1, 0);
  assert.not.match(screen(t.text()).at(-1)!, /attributing/, 'the next tick clears the note');
  p.done();
});

test('percentage and ETA follow the work; a foreign message gets its own line', () => {
  const t = fakeTty();
  const original = t.stream.write;
  const p = new Progress(4, { stream: t.stream, phase: 'inference' });
  assert.is.not(t.stream.write, original, 'guarded while drawn');
  (p as any).t0 = performance.now() - 10_000; // 10 s elapsed
  (p as any).lastLog = 0;
  p.tick(1, 50);
  const shown = screen(t.text()).at(-1)!;
  assert.match(shown, /^inference: 1\/4 examples · 25% · 5 tokens\/s · 10 s · ETA 30 s$/);
  t.stream.write('quantlens: interrupted; no result files were written\n');
  const lines = screen(t.text());
  assert.is(lines.at(-2), 'quantlens: interrupted; no result files were written', 'the message is not glued onto the progress line');
  assert.match(lines.at(-3)!, /^inference: 1\/4 examples · 25%/, 'the progress line stays above it');
  endProgressLines();
  assert.is(t.stream.write, original, 'the stream is restored');
  const after = t.text().length;
  p.done(); // idempotent
  assert.is(t.text().length, after);
});

test('done() ends the drawn line with a newline', () => {
  const t = fakeTty();
  const p = new Progress(null, { stream: t.stream, phase: 'quantization', unit: 'tensors' });
  p.tick(3, 0);
  p.done();
  assert.ok(t.text().endsWith('\n'));
  assert.match(screen(t.text()).at(-2)!, /^quantization: 3 tensors · \d+ s$/);
});

test('quiet: nothing is written; a pipe gets a plain start line', () => {
  const t = fakeTty();
  new Progress(10, { stream: t.stream, quiet: true }).done();
  assert.is(t.text(), '');
  let piped = '';
  const pipe = { isTTY: false, write: (s: string) => ((piped += s), true) } as unknown as NodeJS.WriteStream;
  new Progress(10, { stream: pipe, phase: 'inference' }).done();
  assert.is(piped, 'inference: 0/10 examples · 0% · 0 s · ETA …\n');
});

test.run();
