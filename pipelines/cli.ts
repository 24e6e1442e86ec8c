#!/usr/bin/env node
/**
 * The quantlens command line. Errors print one line (the QuantlensError message); --debug prints
 * the stack. Exit codes: 0 ok, 1 input or run error, 2 usage, 130 interrupted. In CI (CI=true)
 * or with --quiet, progress is not drawn.
 */
import { hideBin } from 'yargs/helpers';
import { removePendingTemporaries } from '../core/atomic-write.ts';
import { buildParser, exitCode } from './cli-parser.ts';
import { endProgressLines } from './progress.ts';

async function main(argv: string[]): Promise<void> {
  const args = hideBin(argv);
  const debug = args.includes('--debug');
  try {
    // Bare `quantlens`: the help, not an error.
    if (args.length === 0) return void (await buildParser(args).showHelp('log'));
    await buildParser(args).parseAsync();
  } catch (e) {
    endProgressLines();
    removePendingTemporaries();
    // One line even for an error quantlens did not anticipate (ORT's kernel messages span several).
    console.error(debug ? e : `quantlens: ${String((e as Error)?.message ?? e).replace(/\s*\n\s*/g, ' ')}`);
    process.exitCode = exitCode(e);
  }
}

await main(process.argv);
