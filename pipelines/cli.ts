#!/usr/bin/env node
/**
 * The quantlens command line. Errors print one line (the QuantlensError message); --debug prints
 * the stack. Exit codes: 0 ok, 1 input or run error, 2 usage, 130 interrupted. In CI (CI=true)
 * or with --quiet, progress is not drawn.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { isQuantlensError, QuantlensError } from '../core/errors.ts';
import { removePendingTemporaries } from '../core/atomic-write.ts';
import { pipelineCommands } from './cli-run.ts';
import { toolCommands } from './cli-tools.ts';
import { packageInfo } from './package-info.ts';
import { endProgressLines } from './progress.ts';

export const EXIT = { ok: 0, error: 1, usage: 2, interrupted: 130 } as const;

const EPILOGUE = [
  'Exit codes: 0 ok, 1 input or run error (one line naming the file, key, flag or node), 2 usage error (unknown command or option, bad flag value), 130 interrupted.',
  'Any pipeline key can be overridden on run, validate and quickstart: --set key.path=value (repeatable).',
].join('\n\n');

const quietDefault = process.env.CI === 'true' || process.env.CI === '1';

function parser(args: string[]) {
  const y = yargs(args)
    .scriptName('quantlens')
    .usage('$0 <command> [options]\n\nSee what quantization does inside an LLM.')
    .option('debug', { type: 'boolean', default: false, describe: 'print stack traces on errors' })
    .option('quiet', { type: 'boolean', default: quietDefault, describe: 'no progress line (default in CI)' });
  return toolCommands(pipelineCommands(y))
    .demandCommand(1, 'name a command')
    .recommendCommands()
    .strict()
    .fail((msg, err) => {
      if (err) throw err;
      const unknown = msg.startsWith('Did you mean') ? `unknown command "${args[0]}": ` : '';
      throw new QuantlensError('USAGE', `${unknown}${msg} (see quantlens --help)`);
    })
    .epilogue(EPILOGUE)
    .version(packageInfo().version)
    .help()
    .wrap(Math.min(110, process.stdout.columns || 80));
}

function exitCode(e: unknown): number {
  if (!isQuantlensError(e)) return EXIT.error;
  return e.code === 'INTERRUPTED' ? EXIT.interrupted : e.code === 'USAGE' ? EXIT.usage : EXIT.error;
}

async function main(argv: string[]): Promise<void> {
  const args = hideBin(argv);
  const debug = args.includes('--debug');
  try {
    // Bare `quantlens`: the help, not an error.
    if (args.length === 0) return void (await parser(args).showHelp('log'));
    await parser(args).parseAsync();
  } catch (e) {
    endProgressLines();
    removePendingTemporaries();
    console.error(debug ? e : `quantlens: ${(e as Error).message}`);
    process.exitCode = exitCode(e);
  }
}

await main(process.argv);
