/** Prompted examples → token ids, cutting prompts longer than the model's context. */
import type { PromptedExample, TokenizedExample } from './types.ts';
import type { TextTokenizer } from '../sources/tokenizer.ts';
import { truncate } from '../sources/tokenizer.ts';

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
