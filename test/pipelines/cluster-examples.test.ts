/**
 * The cluster examples run as written: pipelines/examples/slurm-array.sh on a real single-node
 * Slurm cluster (4-task array, then the dependent merge job), and the Kubernetes Indexed Job
 * (validated against the Job schema, then its container command run once per completion index).
 * Both merged results equal a single uninterrupted run of the same pipeline.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { loadPipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { tableDifferences, TABLE_KEYS } from '../helpers/run-tables.ts';
import { tempDir } from '../helpers/temp.ts';
import { CLI_BIN, writePipeline } from '../helpers/pipeline.ts';
import { slurmUnavailable, startSlurmCluster } from '../helpers/slurm-cluster.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
const TABLES = ['predictions', 'neurons', 'dead', 'correlation', 'calibration'];
// `npx quantlens` inside this repo would look for a published package; run the checkout's CLI.
const QUANTLENS = `${process.execPath} ${CLI_BIN}`;

/** The example's pipeline: demo model and prompts, one example per batch (merge is then exact). */
function pipelineIn(dir: string): string {
  return writePipeline(dir, {
    name: 'cluster',
    layers: ['first', 'last'],
    batch: { max_examples: 1 },
    measure: ['predictions', 'neurons', 'dead', 'correlation', 'calibration'],
    calibration: { bootstrap: 50 },
    output: 'single',
  }, 'pipeline.yaml');
}

async function singleRun(file: string): Promise<string> {
  const res = await runPipeline(loadPipeline(file), { log: () => {}, quiet: true, report: false });
  return res.outDir;
}

async function assertSameAsSingle(mergedDir: string, singleDir: string): Promise<void> {
  for (const t of TABLES) {
    const diffs = await tableDifferences(mergedDir, singleDir, t, TABLE_KEYS[t], 1e-9, { exactOrder: t === 'predictions' });
    assert.equal(diffs, [], `${t}: ${diffs.join('; ')}`);
  }
}

test('slurm-array.sh: a 4-task array on a real Slurm cluster, then its merge job = one run', async () => {
  const why = slurmUnavailable();
  if (why) {
    if (process.env.CI) assert.unreachable(`CI must have Slurm: ${why}`);
    console.log(`SKIP slurm: ${why}`);
    return;
  }
  const dir = tempDir('ql-slurm-');
  const file = pipelineIn(dir);
  const single = await singleRun(file);
  const cluster = await startSlurmCluster(path.join(dir, 'cluster'));
  try {
    const out = path.join(dir, 'runs', 'cluster');
    const r = spawnSync('bash', [path.join(repo, 'pipelines', 'examples', 'slurm-array.sh'), file, '4'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, ...cluster.env, QUANTLENS_CMD: QUANTLENS, QUANTLENS_OUTPUT: out, QUANTLENS_SLURM_CPUS: '1', QUANTLENS_SLURM_MEM: '1G', QUANTLENS_SLURM_TIME: '00:10:00' },
    });
    assert.is(r.status, 0, r.stderr);
    const m = /array job (\d+) \(4 shards\) and merge job (\d+)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    const [, arrayJob, mergeJob] = m!;
    await cluster.waitFor([arrayJob, mergeJob], 240_000);
    assert.equal(cluster.jobStates(arrayJob), ['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED'], cluster.log());
    assert.equal(cluster.jobStates(mergeJob), ['COMPLETED'], cluster.log());
    await assertSameAsSingle(out, single);
  } finally {
    cluster.stop();
  }
});

/** Run `sh -c cmd` with `env`; resolves with the exit code and stderr. */
function sh(cmd: string, env: Record<string, string>, cwd: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('sh', ['-c', cmd], { cwd, env: { ...process.env, ...env } });
    let stderr = '';
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code) => resolve({ code, stderr }));
  });
}

test('k8s-indexed-job.yaml: a valid Indexed Job whose command, run per index and merged, = one run', async () => {
  const doc = parse(readFileSync(path.join(repo, 'pipelines', 'examples', 'k8s-indexed-job.yaml'), 'utf8'));
  new Job(doc).validate(); // the Kubernetes batch/v1 Job schema (throws with the field on error)
  const spec = doc.spec;
  assert.is(spec.completionMode, 'Indexed');
  const container = spec.template.spec.containers[0];
  const env = Object.fromEntries((container.env as { name: string; value: string }[]).map((e) => [e.name, e.value]));
  assert.is(Number(env.SHARDS), spec.completions, 'SHARDS equals spec.completions');
  assert.equal(container.command, ['sh', '-c']);
  const script: string = container.args[0];
  assert.match(script, /--shard "\$JOB_COMPLETION_INDEX\/\$SHARDS"/);

  // The pod's paths, mapped into a temp folder: /config holds the pipeline, /data the runs.
  const dir = tempDir('ql-k8s-');
  const file = pipelineIn(dir);
  const single = await singleRun(file);
  const local = script.replace('npx quantlens', QUANTLENS).replaceAll('/config/pipeline.yaml', file).replaceAll('/data/', `${dir}/data/`);
  const out = path.join(dir, 'data', 'runs', 'boolq');
  const indices = Array.from({ length: spec.completions as number }, (_, i) => i);
  // Two pods at a time (CI has 2 cores); each is the container's own command.
  for (let i = 0; i < indices.length; i += 2) {
    const pods = indices.slice(i, i + 2).map((k) => sh(local, { ...env, QUANTLENS_CACHE: path.join(dir, 'cache'), JOB_COMPLETION_INDEX: String(k) }, dir));
    for (const p of await Promise.all(pods)) assert.is(p.code, 0, p.stderr);
  }
  // The merge step from the example's comment.
  const merge = spawnSync('sh', ['-c', `${QUANTLENS} merge ${out}/shard-*-of-${spec.completions} --output ${out} --quiet`], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  assert.is(merge.status, 0, merge.stderr);
  await assertSameAsSingle(out, single);
});

test.run();
