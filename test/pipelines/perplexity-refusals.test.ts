/**
 * measure: perplexity keeps per-position values of one process (not a mergeable state), so
 * --shard and --resume are refused with one line before anything is opened or written.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';

test('--shard and --resume are refused for measure: perplexity, nothing written', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-pplref-'));
  const cfg = parsePipeline('model: demo\nprecisions: [fp32, nf4]\ndataset: {path: demo}\nmeasure: [predictions, perplexity]\noutput: out\n', path.join(dir, 'p.yaml'));
  for (const [opts, flag] of [[{ shard: { index: 0, count: 2 } }, '--shard'], [{ resume: true }, '--resume']] as const) {
    const err = await runPipeline(cfg, { ...opts, quiet: true, log: () => undefined }).then(() => null, (e: Error) => e);
    assert.ok(err, `${flag} refused`);
    assert.is(err!.message, `${path.join(dir, 'p.yaml')}: not supported: measure perplexity with ${flag}`);
  }
  assert.not.ok(existsSync(path.join(dir, 'out')));
});

test.run();
