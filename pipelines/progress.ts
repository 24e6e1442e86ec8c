/**
 * Progress of one phase (quantization, inference, attribution). On a TTY one self-rewriting
 * line — phase, done/total, percentage, tokens/s, elapsed, ETA — drawn as soon as the phase
 * starts and redrawn every second even when work items are slow (an attribution batch can take
 * minutes). While it is drawn, anything else written to the terminal (a warning, Ctrl-C's
 * message, console.log) first ends the line with a newline, so no message is ever glued onto it. In a plain
 * log (pipes) a line at the start and every 10 s; nothing when `quiet` (CI=true).
 */
type Write = NodeJS.WriteStream['write'];

const active = new Set<Progress>();
let quietByDefault = false;

/** The CLI's --quiet for progress lines made where no option reaches (quantization in the plan). */
export function setProgressQuiet(quiet: boolean): void {
  quietByDefault = quiet;
}

/** End every progress line still drawn (the CLI calls it before printing an error). */
export function endProgressLines(): void {
  for (const p of [...active]) p.done();
}

function formatEta(s: number): string {
  return s < 90 ? `${s.toFixed(0)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}

export class Progress {
  private t0 = performance.now();
  private lastLog = 0;
  private readonly tty: boolean;
  private timer?: NodeJS.Timeout;
  private restore: (() => void)[] = [];
  private drawn = false;
  private finished = false;
  private suffix = '';
  examples = 0;
  tokens = 0;

  constructor(
    private total: number | null,
    private opts: { quiet?: boolean; stream?: NodeJS.WriteStream; phase?: string; unit?: string; ttyOnly?: boolean } = {},
  ) {
    const quiet = opts.quiet ?? quietByDefault;
    this.opts = { ...opts, quiet: quiet || (opts.ttyOnly && !this.out.isTTY) };
    this.tty = !!this.out.isTTY && !quiet;
    if (this.tty) {
      active.add(this);
      this.guardTerminal();
      this.draw();
      this.timer = setInterval(() => this.draw(), 1000);
      this.timer.unref();
    } else if (!this.opts.quiet) {
      this.lastLog = performance.now();
      this.out.write(this.line() + '\n');
    }
  }

  private get out(): NodeJS.WriteStream {
    return this.opts.stream ?? process.stderr;
  }

  /** Foreign writes to the terminal end the line first; the timer draws a fresh one afterwards. */
  private guardTerminal(): void {
    const streams = new Set([this.out, ...(process.stdout.isTTY ? [process.stdout] : []), ...(process.stderr.isTTY ? [process.stderr] : [])]);
    for (const s of streams) {
      const original = s.write;
      s.write = ((chunk: unknown, ...rest: unknown[]) => {
        if (this.drawn) {
          this.drawn = false;
          original.call(this.out, '\n');
        }
        return (original as (...a: unknown[]) => boolean).call(s, chunk, ...rest);
      }) as Write;
      this.restore.push(() => (s.write = original));
    }
  }

  private draw(): void {
    if (this.finished) return;
    this.lastLog = performance.now();
    this.drawn = false; // our own redraw overwrites the line (\r); only foreign writes end it
    this.out.write(`\r\x1b[K${this.line()}`);
    this.drawn = true;
  }

  /** A note on the work item in progress (e.g. `attribution 3/9`), drawn now; the next tick clears it. */
  note(text: string): void {
    this.suffix = text;
    if (this.tty) this.draw();
  }

  /** Absolute progress (done of total), for phases that count themselves (quantization: weights). */
  update(done: number, total: number): void {
    this.total = total;
    this.tick(done - this.examples, 0);
  }

  tick(examples: number, tokens: number): void {
    this.suffix = '';
    this.examples += examples;
    this.tokens += tokens;
    const now = performance.now();
    if (this.tty) {
      if (now - this.lastLog >= 100) this.draw();
    } else if (!this.opts.quiet && now - this.lastLog > 10_000) {
      this.lastLog = now;
      this.out.write(this.line(now) + '\n');
    }
  }

  line(now = performance.now()): string {
    const s = (now - this.t0) / 1000;
    const unit = this.opts.unit ?? 'examples';
    const count = `${this.examples}${this.total ? `/${this.total}` : ''} ${unit}`;
    const parts = [this.opts.phase ? `${this.opts.phase}: ${count}` : count];
    if (this.total) parts.push(`${((100 * this.examples) / this.total).toFixed(0)}%`);
    if (this.tokens > 0) parts.push(`${Math.round(this.tokens / Math.max(s, 1e-9))} tokens/s`);
    parts.push(`${s.toFixed(0)} s`);
    if (this.total) parts.push(`ETA ${this.examples > 0 ? formatEta((s / this.examples) * Math.max(0, this.total - this.examples)) : '…'}`);
    if (this.suffix) parts.push(this.suffix);
    return parts.join(' · ');
  }

  /**
   * Ends the phase (idempotent): the last state stays on its own line (or is erased, for a phase
   * that turned out to have nothing to do); the terminal is given back.
   */
  done(opts: { erase?: boolean } = {}): { seconds: number; tokensPerSecond: number } {
    const seconds = (performance.now() - this.t0) / 1000;
    if (!this.finished) {
      this.finished = true;
      clearInterval(this.timer);
      for (const r of this.restore.reverse()) r();
      this.restore = [];
      if (this.tty && this.drawn) this.out.write(opts.erase ? '\r\x1b[K' : `\r\x1b[K${this.line()}\n`);
      this.drawn = false;
      active.delete(this);
    }
    return { seconds, tokensPerSecond: this.tokens / Math.max(seconds, 1e-9) };
  }
}
