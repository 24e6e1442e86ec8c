/**
 * Progress: on a TTY one self-rewriting line with examples, tokens/s and ETA; in a plain log
 * (pipes, CI) a line every 10 s, and nothing but start/end when `quiet` (CI=true).
 */
export class Progress {
  private t0 = performance.now();
  private lastLog = 0;
  private readonly tty: boolean;
  examples = 0;
  tokens = 0;

  constructor(
    private total: number | null,
    private opts: { quiet?: boolean; stream?: NodeJS.WriteStream } = {},
  ) {
    this.tty = !!(opts.stream ?? process.stderr).isTTY && !opts.quiet;
  }

  private get out(): NodeJS.WriteStream {
    return this.opts.stream ?? process.stderr;
  }

  tick(examples: number, tokens: number): void {
    this.examples += examples;
    this.tokens += tokens;
    const now = performance.now();
    if (this.tty) {
      if (now - this.lastLog < 100) return;
      this.lastLog = now;
      this.out.write(`\r\x1b[K${this.line(now)}`);
    } else if (!this.opts.quiet && now - this.lastLog > 10_000) {
      this.lastLog = now;
      this.out.write(this.line(now) + '\n');
    }
  }

  line(now = performance.now()): string {
    const s = (now - this.t0) / 1000;
    const tps = this.tokens / Math.max(s, 1e-9);
    const parts = [`${this.examples}${this.total ? `/${this.total}` : ''} examples`, `${Math.round(tps)} tokens/s`, `${s.toFixed(1)} s`];
    if (this.total && this.examples > 0) {
      const eta = (s / this.examples) * (this.total - this.examples);
      parts.push(`ETA ${eta < 90 ? `${eta.toFixed(0)} s` : `${(eta / 60).toFixed(1)} min`}`);
    }
    return parts.join(' · ');
  }

  done(): { seconds: number; tokensPerSecond: number } {
    const seconds = (performance.now() - this.t0) / 1000;
    if (this.tty) this.out.write('\r\x1b[K');
    return { seconds, tokensPerSecond: this.tokens / Math.max(seconds, 1e-9) };
  }
}
