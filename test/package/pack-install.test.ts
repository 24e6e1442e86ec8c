/**
 * The package as a user gets it: `npm pack` (prepack builds dist/), installed offline into a
 * fresh project with ONNXRUNTIME_NODE_INSTALL=skip, then the CLI (--version, --help, the
 * quickstart into the project's ./runs), a plain .mjs import and a TypeScript consumer
 * type-checked with tsc. Dependencies come from the npm cache that `npm ci` filled: the fresh
 * project gets a lockfile made from quantlens's own (its runtime entries only), so npm never
 * needs registry metadata and `--offline` holds.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/temp.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8'));
const cache = tempDir('ql-pack-cache-');
const env = { ...process.env, QUANTLENS_CACHE: cache, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', CI: 'true' };

function sh(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, ...opts });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const hint = out.includes('ENOTCACHED') ? '\n(the npm cache lacks a runtime dependency: this test installs offline from what `npm ci` cached)' : '';
  assert.is(r.status, 0, `${cmd} ${args.join(' ')} → exit ${r.status}\n${out}${hint}`);
  if (process.env.QL_TIMING) console.log(`    ${((Date.now() - t0) / 1000).toFixed(1)} s  ${cmd} ${args.slice(0, 3).join(' ')}`);
  return String(r.stdout ?? '');
}

/** package.json + package-lock.json of a consumer depending on the tarball only. */
function writeConsumer(dir: string, tgz: string): void {
  const lock = JSON.parse(readFileSync(path.join(repo, 'package-lock.json'), 'utf8'));
  const spec = `file:${path.basename(tgz)}`;
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
  const root = { name: 'consumer', version: '1.0.0', private: true, type: 'module', dependencies: { quantlens: spec } };
  const packages: Record<string, unknown> = {
    '': { name: root.name, version: root.version, dependencies: root.dependencies },
    'node_modules/quantlens': { version: pkg.version, resolved: spec, integrity, license: pkg.license, dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines },
  };
  // Runtime entries only: what `npm install quantlens` would put into a project.
  for (const [k, v] of Object.entries(lock.packages as Record<string, { dev?: boolean }>)) if (k && !v.dev) packages[k] = v;
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify(root, null, 2));
  writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ name: root.name, version: root.version, lockfileVersion: 3, requires: true, packages }, null, 2));
}

const CONSUMER_TS = `import { loadPipeline, runPipeline, type PipelineConfig, type RunResult } from 'quantlens';
const file: string = process.argv[2] ?? 'pipeline.yaml';
const cfg: PipelineConfig = loadPipeline(file);
const result: RunResult = await runPipeline(cfg, { quiet: true });
console.log(result.outDir, Object.keys(result.summary).length);
`;

const CONSUMER_MJS = `import { loadPipeline, runPipeline } from 'quantlens';
import { createRequire } from 'node:module';
const yaml = createRequire(import.meta.url).resolve('quantlens/package.json').replace(/package\\.json$/, 'pipelines/examples/quickstart.yaml');
const cfg = loadPipeline(yaml);
console.log(JSON.stringify({ load: typeof loadPipeline, run: typeof runPipeline, model: cfg.model, precisions: cfg.precisions }));
`;

const TSCONFIG = (typeRoot: string) => ({
  compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [typeRoot] },
  files: ['consumer.ts'],
});

test('npm pack → offline install → CLI, quickstart, .mjs import, tsc on a .ts consumer', () => {
  const dir = tempDir('ql-pack-');
  try {
    sh('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: repo });
    const tgz = path.join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!);
    const listing = sh('tar', ['-tzf', tgz]).split('\n');
    assert.ok(listing.includes('package/dist/index.js') && listing.includes('package/dist/index.d.ts'), 'dist/ is packed');
    assert.not.ok(listing.some((f) => /^package\/(test|bench|\.ci)\//.test(f) || /\.test\./.test(f)), 'no tests, bench or CI files');
    assert.not.ok(listing.some((f) => f.startsWith('package/') && f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no TypeScript sources');

    const project = path.join(dir, 'consumer');
    sh('mkdir', ['-p', project]);
    sh('cp', [tgz, project]);
    writeConsumer(project, path.join(project, path.basename(tgz)));
    sh('npm', ['ci', '--offline', '--silent'], { cwd: project });

    const npx = (...args: string[]) => sh('npx', ['--no', '--', 'quantlens', ...args], { cwd: project });
    assert.is(npx('--version').trim(), pkg.version);
    assert.match(npx('--help'), /Exit codes: 0 ok, 1 input or run error/);
    // The quickstart, cut through its own override flags to 8 prompts and no attribution
    // (building the backward graphs is most of its minute); the dev tests cover salience.
    npx('quickstart', '--quiet', '--limit', '8', '--measure', 'predictions,neurons,dead,agreement');
    const summary = JSON.parse(readFileSync(path.join(project, 'runs', 'quickstart', 'summary.json'), 'utf8'));
    assert.is(summary.dataset.examples, 8);
    assert.equal(Object.keys(summary.precisions), ['fp32', 'nf4', 'llm-int8']);
    assert.ok(existsSync(path.join(project, 'runs', 'quickstart', 'report.html')));
    const installed = readdirSync(path.join(project, 'node_modules', 'quantlens'), { recursive: true }) as string[];
    assert.equal(installed.filter((f) => /(^|\/)(runs|\.cache)(\/|$)/.test(f)), [], 'nothing written into the installed package');
    assert.ok(existsSync(path.join(cache, 'demo')), 'the demo model went to the user cache');

    // Attribution on worker threads from the built files (lig-worker.js loads by URL, not through tsx).
    writeFileSync(path.join(project, 'salience.yaml'), 'model: demo\ndataset: {path: demo, limit: 2}\nprecisions: [fp32]\nmeasure: [predictions, salience]\nlayers: [0]\nsession: {intra_op_threads: 2}\nsalience: {steps: 2, workers: 2}\noutput: runs/salience\n');
    npx('run', 'salience.yaml', '--quiet', '--no-report');
    const sal = JSON.parse(readFileSync(path.join(project, 'runs', 'salience', 'summary.json'), 'utf8'));
    assert.is(sal.memory.salience.workers, 2, 'two attribution workers');
    assert.ok(existsSync(path.join(project, 'runs', 'salience', 'salience.parquet')));

    writeFileSync(path.join(project, 'consumer.mjs'), CONSUMER_MJS);
    const mjs = JSON.parse(sh(process.execPath, ['consumer.mjs'], { cwd: project }));
    assert.equal(mjs, { load: 'function', run: 'function', model: 'demo', precisions: ['fp32', 'nf4', 'llm-int8'] });

    writeFileSync(path.join(project, 'consumer.ts'), CONSUMER_TS);
    writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG(path.join(repo, 'node_modules', '@types'))));
    const tsc = spawnSync(path.join(repo, 'node_modules', '.bin', 'tsc'), ['--noEmit', '-p', project], { encoding: 'utf8', env });
    assert.is(tsc.status, 0, `tsc found errors:\n${tsc.stdout}${tsc.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(cache, { recursive: true, force: true });
  }
});

test.run();
