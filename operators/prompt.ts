/** Dataset records → prompt text and gold label (template rendering, no code evaluation). */
import type { DatasetRecord, PromptedExample } from './types.ts';
import type { PromptTemplate } from '../sources/prompt.ts';

export async function* promptExamples(records: AsyncIterable<DatasetRecord>, template: PromptTemplate, goldColumn: string): AsyncGenerator<PromptedExample> {
  for await (const r of records) {
    yield { example_id: r.example_id, text: template.render(r.fields), gold: r.fields[goldColumn] ?? '', fields: r.fields };
  }
}
