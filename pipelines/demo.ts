/**
 * `model: demo` and `dataset.path: demo` select the built-in demo model (seeded random weights,
 * generated on first use) and its prompt set, so a fresh clone runs without ../shared.
 */
import type { PipelineConfig } from './schema.ts';
import { ensureDemoModel } from '../sources/demo/demo-model.ts';
import path from 'node:path';

export const DEMO_LABEL = 'demo model, random weights';

export async function resolveDemo(cfg: PipelineConfig): Promise<{ modelDir: string; datasetPath: string; label: string | null }> {
  const isDemo = cfg.model === 'demo' || cfg.model.startsWith('demo:');
  if (!isDemo && cfg.dataset.path !== 'demo') return { modelDir: cfg.model, datasetPath: cfg.dataset.path, label: null };
  const size = cfg.model === 'demo:bench' ? 'bench' : 'tiny';
  const demoDir = await ensureDemoModel({ size });
  return {
    modelDir: isDemo ? demoDir : cfg.model,
    datasetPath: cfg.dataset.path === 'demo' ? path.join(demoDir, 'prompts.jsonl') : cfg.dataset.path,
    label: isDemo ? DEMO_LABEL : null,
  };
}
