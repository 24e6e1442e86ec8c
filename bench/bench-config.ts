/** The pipeline config every bench section builds: YAML text through the real parser, as a user writes it. */
import { parsePipeline } from '../pipelines/load.ts';
import type { PipelineConfig } from '../pipelines/schema.ts';

/** The benches' prompt template, as text. */
export const PROMPT_TEXT = 'Respond with True or False only.\n{prompt}\nAnswer:';
/** The same, escaped for a double-quoted YAML scalar (benchConfig writes YAML text). */
export const PROMPT_TEMPLATE = JSON.stringify(PROMPT_TEXT).slice(1, -1);

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
