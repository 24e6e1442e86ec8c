/**
 * A single-node Slurm cluster on localhost for tests: munged, slurmctld and slurmd from Debian's
 * packages (`.ci/run` installs them), with every file under one temporary folder and free ports,
 * so nothing outside the folder is touched. Needs root (slurmd runs jobs as their user).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const DAEMONS = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'scontrol', 'sinfo'];

/** Why a cluster cannot be started here, or null when it can. */
export function slurmUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  for (const d of DAEMONS) if (spawnSync('sh', ['-c', `command -v ${d}`]).status !== 0) return `${d} not installed (apt-get install slurmctld slurmd slurm-client munge)`;
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface SlurmCluster {
  /** Environment for client commands (SLURM_CONF). */
  env: Record<string, string>;
  /** JobState of a job (array jobs: every task's state). */
  jobStates(id: string): string[];
  /** Resolves when every listed job left PENDING/RUNNING; rejects after `timeoutMs`. */
  waitFor(ids: string[], timeoutMs: number): Promise<void>;
  log(): string;
  stop(): void;
}

export async function startSlurmCluster(dir: string): Promise<SlurmCluster> {
  for (const d of ['state', 'spool', 'log', 'run', 'munge']) mkdirSync(path.join(dir, d), { recursive: true });
  const key = path.join(dir, 'munge', 'munge.key');
  writeFileSync(key, randomBytes(1024), { mode: 0o600 });
  const sock = path.join(dir, 'run', 'munge.sock');
  execFileSync('munged', ['--force', `--key-file=${key}`, `--socket=${sock}`, `--log-file=${path.join(dir, 'log', 'munged.log')}`, `--pid-file=${path.join(dir, 'run', 'munged.pid')}`, `--seed-file=${path.join(dir, 'munge', 'seed')}`]);
  const host = os.hostname();
  const conf = path.join(dir, 'slurm.conf');
  const [ctldPort, dPort] = [await freePort(), await freePort()];
  writeFileSync(conf, [
    'ClusterName=quantlens-test',
    `SlurmctldHost=${host}(127.0.0.1)`,
    'SlurmUser=root',
    'AuthType=auth/munge',
    `AuthInfo=socket=${sock}`,
    'CredType=cred/munge',
    `SlurmctldPort=${ctldPort}`,
    `SlurmdPort=${dPort}`,
    `StateSaveLocation=${path.join(dir, 'state')}`,
    `SlurmdSpoolDir=${path.join(dir, 'spool')}`,
    `SlurmctldPidFile=${path.join(dir, 'run', 'slurmctld.pid')}`,
    `SlurmdPidFile=${path.join(dir, 'run', 'slurmd.pid')}`,
    `SlurmctldLogFile=${path.join(dir, 'log', 'slurmctld.log')}`,
    `SlurmdLogFile=${path.join(dir, 'log', 'slurmd.log')}`,
    // No cgroups in a sandbox: plain process tracking, no task binding, no accounting daemon.
    'ProctrackType=proctrack/linuxproc',
    'TaskPlugin=task/none',
    'SelectType=select/cons_tres',
    'SelectTypeParameters=CR_Core',
    'MpiDefault=none',
    'ReturnToService=2',
    'JobAcctGatherType=jobacct_gather/none',
    'AccountingStorageType=accounting_storage/none',
    'MinJobAge=600',
    `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${os.availableParallelism()} RealMemory=${Math.floor(os.totalmem() / 2 ** 20 / 2)} State=UNKNOWN`,
    'PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP',
  ].join('\n') + '\n');
  const env = { SLURM_CONF: conf };
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { env: { ...process.env, ...env }, encoding: 'utf8' });
  run('slurmctld', ['-f', conf]);
  run('slurmd', ['-f', conf]);
  const pid = (name: string) => {
    const f = path.join(dir, 'run', name);
    return existsSync(f) ? Number(readFileSync(f, 'utf8').trim()) : 0;
  };
  const cluster: SlurmCluster = {
    env,
    jobStates: (id) => [...run('scontrol', ['show', 'job', id]).matchAll(/JobState=(\S+)/g)].map((m) => m[1]),
    async waitFor(ids, timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (ids.some((id) => cluster.jobStates(id).some((s) => s === 'PENDING' || s === 'RUNNING' || s === 'CONFIGURING' || s === 'COMPLETING'))) {
        if (Date.now() > until) throw new Error(`Slurm jobs ${ids.join(', ')} still running after ${timeoutMs / 1000}s`);
        await new Promise((r) => setTimeout(r, 500));
      }
    },
    log: () => ['slurmctld.log', 'slurmd.log'].map((f) => { const p = path.join(dir, 'log', f); return existsSync(p) ? readFileSync(p, 'utf8').split('\n').slice(-15).join('\n') : ''; }).join('\n'),
    stop() {
      for (const name of ['slurmd.pid', 'slurmctld.pid', 'munged.pid']) {
        const p = pid(name);
        if (p) try { process.kill(p, 'SIGTERM'); } catch { /* already gone */ }
      }
    },
  };
  // The node registers within a few seconds; wait until the partition accepts work.
  const until = Date.now() + 30_000;
  while (!/idle/.test(run('sinfo', ['-h', '-o', '%t']))) {
    if (Date.now() > until) { cluster.stop(); throw new Error(`Slurm node never became idle:\n${cluster.log()}`); }
    await new Promise((r) => setTimeout(r, 300));
  }
  return cluster;
}
