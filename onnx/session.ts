/**
 * ONNX Runtime sessions with the settings recorded next to every result (thread counts and graph
 * optimisation change floating-point results in the last bits, so they belong in the metadata).
 *
 * Models given as bytes whose initializers live in external data (onnxruntime-node 1.30, checked
 * with tiny-random-llama-fp16):
 *  - bytes alone: ORT looks for the data file relative to the process cwd and refuses
 *    ("External data path for model loaded from bytes escapes working directory").
 *  - SessionOptions.externalData works in node only as `{ path, data: Uint8Array }` objects (a
 *    string path is rejected: "value must be an object" / "must have a 'data' property of type
 *    buffer"), i.e. the whole data file must be read into JS memory first.
 *  - a temp dir holding the bytes plus symlinks to the data files fails: ORT resolves the
 *    symlink and refuses a path that "escapes model directory".
 *  - the session config entry `session.model_external_initializers_file_folder_path` = the data
 *    folder works and lets ORT read/mmap the files itself. createSession uses that.
 */
import ort from 'onnxruntime-node';
import os from 'node:os';
import { QuantlensError } from '../core/errors.ts';

export interface SessionSettings {
  intraOpThreads: number;
  interOpThreads: number;
  graphOptimizationLevel: 'disabled' | 'basic' | 'extended' | 'all';
  /** In order of preference, e.g. ['cuda', 'cpu']; checked by execution-providers.ts before use. */
  executionProviders: string[];
  /** ORT session config entries, e.g. {'session.set_denormal_as_zero': '1'}. */
  extra: Record<string, string>;
}

export const EXTERNAL_DATA_FOLDER_KEY = 'session.model_external_initializers_file_folder_path';

export function defaultSessionSettings(): SessionSettings {
  return {
    intraOpThreads: os.availableParallelism(),
    interOpThreads: 1,
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
    extra: {},
  };
}

export function sessionOptions(settings: SessionSettings, externalDataDir?: string): ort.InferenceSession.SessionOptions {
  const extra: Record<string, string> = { ...settings.extra };
  if (externalDataDir !== undefined) extra[EXTERNAL_DATA_FOLDER_KEY] = externalDataDir;
  return {
    executionProviders: settings.executionProviders as ort.InferenceSession.ExecutionProviderConfig[],
    intraOpNumThreads: settings.intraOpThreads,
    interOpNumThreads: settings.interOpThreads,
    graphOptimizationLevel: settings.graphOptimizationLevel,
    extra,
  };
}

/**
 * Load a model from a path or from bytes. With bytes, pass externalDataDir (the original model's
 * folder) when its initializers are external; with a path ORT finds them beside the file.
 */
export async function createSession(
  model: string | Uint8Array,
  settings: SessionSettings,
  opts: { externalDataDir?: string; where?: string } = {},
): Promise<ort.InferenceSession> {
  const options = sessionOptions(settings, typeof model === 'string' ? undefined : opts.externalDataDir);
  try {
    return typeof model === 'string'
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
  } catch (e) {
    const what = typeof model === 'string' ? model : `model bytes (${model.byteLength} B)`;
    const msg = String((e as Error).message ?? e).split('\n')[0];
    throw new QuantlensError('MODEL', `ONNX Runtime cannot load ${what}: ${msg}`, opts.where, { cause: e });
  }
}

/** Flat string map for Parquet key-value metadata. */
export function describeSettings(s: SessionSettings): Record<string, string> {
  const out: Record<string, string> = {
    'ort.version': ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown',
    'ort.execution_providers': s.executionProviders.join(','),
    'ort.intra_op_threads': String(s.intraOpThreads),
    'ort.inter_op_threads': String(s.interOpThreads),
    'ort.graph_optimization_level': s.graphOptimizationLevel,
  };
  for (const [k, v] of Object.entries(s.extra).sort(([a], [b]) => a.localeCompare(b))) out[`ort.config.${k}`] = v;
  return out;
}
