/**
 * Dataset records → prompt text and gold label (template rendering, no code evaluation) → token
 * ids, cutting prompts longer than the model's context. The text-side stages before batching.
 */
import type { DatasetRecord, PromptedExample, TokenizedExample } from '../core/types.ts';
import type { PromptTemplate } from '../sources/prompt.ts';
import type { TextTokenizer } from '../sources/tokenizer.ts';
import { truncate } from '../sources/tokenizer.ts';

export async function* promptExamples(records: AsyncIterable<DatasetRecord>, template: PromptTemplate, goldColumn: string): AsyncGenerator<PromptedExample> {
  for await (const r of records) {
    yield { example_id: r.example_id, text: template.render(r.fields), gold: r.fields[goldColumn] ?? '', fields: r.fields };
  }
}

export interface TokenizeStats {
  examples: number;
  truncated: number;
  tokens: number;
}

export async function* tokenizeExamples(
  examples: AsyncIterable<PromptedExample>,
  tok: TextTokenizer,
  opts: { maxContext: number; keep: 'keep-end' | 'keep-start'; stats?: TokenizeStats },
): AsyncGenerator<TokenizedExample> {
  for await (const ex of examples) {
    const cut = truncate(tok.encode(ex.text), opts.maxContext, opts.keep === 'keep-start' ? 'left' : 'right', tok.bosId);
    if (opts.stats) {
      opts.stats.examples++;
      opts.stats.tokens += cut.ids.length;
      if (cut.truncated) opts.stats.truncated++;
    }
    yield { example_id: ex.example_id, ids: cut.ids, gold: ex.gold, truncated: cut.truncated, fields: ex.fields };
  }
}
