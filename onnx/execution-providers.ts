/**
 * Execution providers: which ones this onnxruntime-node build can run, checked before any work.
 *
 * `ort.listSupportedBackends()` names the providers the binding knows, but a provider whose
 * libraries were not installed (CUDA without onnxruntime-node's CUDA download, a GPU-less machine)
 * is only found out when a session is created with it. So each requested provider is probed once
 * with a one-node model, alone, and refused with one line that lists those that do work.
 */
import ort from 'onnxruntime-node';
import { QuantlensError } from '../core/errors.ts';
import { GraphBuilder } from './builder.ts';

let probeModel: Uint8Array | undefined;
const probed = new Map<string, Promise<string | null>>();

/** null when `ep` can create and run a session here, else ONNX Runtime's first line of refusal. */
function probe(ep: string): Promise<string | null> {
  let p = probed.get(ep);
  if (!p) {
    p = (async () => {
      if (!probeModel) {
        const g = new GraphBuilder('quantlens_ep_probe');
        g.input('X', 'float', [1]);
        g.node('Relu', ['X'], ['Y']);
        g.output('Y', 'float', [1]);
        probeModel = g.toModel({ opset: 17 });
      }
      try {
        const s = await ort.InferenceSession.create(probeModel, { executionProviders: [ep as ort.InferenceSession.ExecutionProviderConfig], logSeverityLevel: 4 });
        await s.run({ X: new ort.Tensor('float32', Float32Array.of(1), [1]) });
        await s.release();
        return null;
      } catch (e) {
        return String((e as Error).message ?? e).split('\n')[0];
      }
    })();
    probed.set(ep, p);
  }
  return p;
}

/** What this build offers: bundled providers, and those that need libraries installed beside it. */
export function describeBuildProviders(): string {
  const b = ort.listSupportedBackends();
  const bundled = b.filter((x) => x.bundled).map((x) => x.name);
  const extra = b.filter((x) => !x.bundled).map((x) => x.name);
  return `this onnxruntime-node build has ${bundled.join(', ')}${extra.length ? `; ${extra.join(', ')} need their own libraries (see the README on CUDA)` : ''}`;
}

/** The providers of this build that create and run a session here (each probed once). */
export async function workingExecutionProviders(): Promise<string[]> {
  const ok: string[] = [];
  for (const { name } of ort.listSupportedBackends()) if ((await probe(name)) === null) ok.push(name);
  return ok;
}

/** Refuse, before any work, a provider list that names one this build cannot run here. */
export async function checkExecutionProviders(requested: string[], where?: string): Promise<void> {
  if (requested.length === 0) throw new QuantlensError('CONFIG', 'execution_providers is empty; use [cpu] or e.g. [cuda, cpu]', where);
  const known = new Set(ort.listSupportedBackends().map((b) => b.name));
  for (const ep of requested) {
    // 'cpu' always runs; probing it would only cost a session.
    const why = ep === 'cpu' ? null : known.has(ep) ? await probe(ep) : 'not part of this onnxruntime-node build';
    if (why !== null) throw new QuantlensError('CONFIG', `execution provider "${ep}" is not available (${why}); ${describeBuildProviders()}`, where);
  }
}
