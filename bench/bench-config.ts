/** The pipeline config every bench section builds: YAML text through the real parser, as a user writes it. */
import { parsePipeline } from '../pipelines/load.ts';
import type { PipelineConfig } from '../pipelines/schema.ts';

export const PROMPT_TEMPLATE = 'Respond with True or False only.\\n{prompt}\\nAnswer:';

/** The layers a bench config captures unless told otherwise. */
export const BENCH_LAYERS = ['first', 'middle', 'last'] as const;

export interface BenchConfigOptions {
  /** Model folder, or 'demo' / 'demo:bench'. */
  model: string;
  dataset: string;
  output: string;
  measure: string[];
  precisions?: string[];
  layers?: string[];
}

/** A pipeline config built the way a user would write it: YAML text through the real parser. */
export function benchConfig(o: BenchConfigOptions, yamlPath: string): PipelineConfig {
  const yaml = [
    'name: bench',
    `model: ${JSON.stringify(o.model)}`,
    `precisions: [${(o.precisions ?? ['fp32']).join(', ')}]`,
    'dataset:',
    `  path: ${JSON.stringify(o.dataset)}`,
    `  prompt: "${PROMPT_TEMPLATE}"`,
    `layers: [${(o.layers ?? BENCH_LAYERS).join(', ')}]`,
    `measure: [${o.measure.join(', ')}]`,
    `output: ${JSON.stringify(o.output)}`,
    '',
  ].join('\n');
  return parsePipeline(yaml, yamlPath);
}
