/**
 * Execution providers are checked before any work: a provider this onnxruntime-node build cannot
 * run is refused in one line listing the ones it can; the chosen list reaches every session and
 * the recorded settings. (CUDA itself needs a GPU and onnxruntime-node's CUDA build: where it runs,
 * the cuda case below checks a real session instead of the refusal.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { checkExecutionProviders, workingExecutionProviders } from '../../onnx/execution-providers.ts';
import { defaultSessionSettings, describeSettings, sessionOptions } from '../../onnx/session.ts';
import { loadPipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { expectRejects } from '../helpers/expect-error.ts';
import { tempDir } from '../helpers/temp.ts';
import { writePipeline } from '../helpers/pipeline.ts';

test('cpu works; an unknown provider is refused naming it and listing those that work', async () => {
  await checkExecutionProviders(['cpu']);
  const working = await workingExecutionProviders();
  assert.ok(working.includes('cpu'));
  const e = await expectRejects(checkExecutionProviders(['bogus', 'cpu'], 'p.yaml: session.execution_providers'), { code: 'CONFIG', message: /execution provider "bogus" is not available \(not part of this onnxruntime-node build\); this onnxruntime-node build has cpu/ });
  assert.match(e.message, /p\.yaml: session\.execution_providers/);
});

test('cuda: a real session where this build and machine have it, else a one-line refusal', async () => {
  const working = await workingExecutionProviders();
  if (working.includes('cuda')) await checkExecutionProviders(['cuda', 'cpu']);
  else await expectRejects(checkExecutionProviders(['cuda', 'cpu']), { code: 'CONFIG', message: /"cuda" is not available \(.+\); this onnxruntime-node build has cpu.*cuda/ });
});

test('the provider list reaches session options and the recorded settings', () => {
  const s = { ...defaultSessionSettings(), executionProviders: ['cuda', 'cpu'] };
  assert.equal(sessionOptions(s).executionProviders, ['cuda', 'cpu']);
  assert.is(describeSettings(s)['ort.execution_providers'], 'cuda,cpu');
});

test('a pipeline naming an unavailable provider is refused before any output exists', async () => {
  const dir = tempDir('ql-ep-');
  const file = writePipeline(dir, { session: { execution_providers: ['bogus'] } });
  await expectRejects(runPipeline(loadPipeline(file), { quiet: true, log: () => {} }), { code: 'CONFIG', message: /session\.execution_providers/ });
  const out = path.join(dir, 'out');
  assert.ok(!existsSync(out) || readdirSync(out).length === 0, 'no output');
});

test('a run records its providers in summary.json', async () => {
  const dir = tempDir('ql-ep-');
  const file = writePipeline(dir, { dataset: { path: 'demo', limit: 4 }, session: { execution_providers: ['cpu'] }, measure: ['predictions'] });
  const r = await runPipeline(loadPipeline(file), { quiet: true, log: () => {}, report: false });
  const summary = JSON.parse(readFileSync(path.join(r.outDir, 'summary.json'), 'utf8'));
  assert.is(summary.ort.settings['ort.execution_providers'], 'cpu');
});

test.run();
