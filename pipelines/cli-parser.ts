/**
 * The quantlens argument parser: every command, its options and help text, usage errors (exit 2)
 * with command suggestions, and the exit codes. pipelines/cli.ts runs it.
 */
import yargs from 'yargs';
import { isQuantlensError, QuantlensError } from '../core/errors.ts';
import { pipelineCommands } from './cli-run.ts';
import { toolCommands } from './cli-tools.ts';
import { packageInfo } from '../core/package-info.ts';
import { setProgressQuiet } from './progress.ts';

export const EXIT = { ok: 0, error: 1, usage: 2, interrupted: 130 } as const;

const EPILOGUE = [
  'Exit codes: 0 ok, 1 input or run error (one line naming the file, key, flag or node), 2 usage error (unknown command or option, bad flag value), 130 interrupted.',
  'Any pipeline key can be overridden on run, validate and quickstart: --set key.path=value (repeatable).',
].join('\n\n');

const quietDefault = process.env.CI === 'true' || process.env.CI === '1';

export function buildParser(args: string[]) {
  const y = yargs(args)
    .scriptName('quantlens')
    .usage('$0 <command> [options]\n\nSee what quantization does inside an LLM.')
    .option('debug', { type: 'boolean', default: false, describe: 'print stack traces on errors' })
    .option('quiet', { type: 'boolean', default: quietDefault, describe: 'no progress line (default in CI)' });
  return toolCommands(pipelineCommands(y.middleware((a) => setProgressQuiet(!!a.quiet))))
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

export function exitCode(e: unknown): number {
  if (!isQuantlensError(e)) return EXIT.error;
  return e.code === 'INTERRUPTED' ? EXIT.interrupted : e.code === 'USAGE' ? EXIT.usage : EXIT.error;
}
