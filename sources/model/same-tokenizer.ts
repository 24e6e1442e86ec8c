/**
 * Two models compared in one pipeline (a precision with its own model path) must mean the same
 * thing by every token id: same model vocabulary size, and tokenizers that agree on every token
 * (added tokens included) and the special ids — otherwise the pair is refused. The pipeline's own
 * tokenizer encodes the text for every precision, so a tokenizer that only *encodes* some text
 * differently (e.g. genai's Metaspace pre-tokenizer vs the Prepend/Replace normaliser on text with
 * a leading space) is not refused; the difference is returned, to be recorded.
 */
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import { loadTokenizer } from '../tokenizer.ts';
import type { ModelFolder } from './folder.ts';

const PROBES = [
  'Respond with True or False only.\nIs the sky blue?\nAnswer:',
  ' The quick brown fox jumps over the lazy dog. 1234567890',
  'naïve café — “quotes”, tabs\tand  double  spaces; émoji 🙂',
];

/** Throws when the vocabularies differ; returns a note when only some encodings differ, else null. */
export async function checkSameTokenizer(a: ModelFolder, b: ModelFolder, where: string): Promise<string | null> {
  if (a.vocabSize !== null && b.vocabSize !== null && a.vocabSize !== b.vocabSize)
    throw new QuantlensError('TOKENIZER', `model vocabulary ${b.vocabSize} differs from the pipeline model's ${a.vocabSize}`, where);
  if (path.resolve(a.tokenizerDir) === path.resolve(b.tokenizerDir)) return null;
  const [ta, tb] = await Promise.all([loadTokenizer(a.tokenizerDir), loadTokenizer(b.tokenizerDir)]);
  const differs = (what: string, x: unknown, y: unknown) => {
    throw new QuantlensError('TOKENIZER', `tokenizer differs from the pipeline model's: ${what} ${JSON.stringify(y)} vs ${JSON.stringify(x)}`, where);
  };
  for (const k of ['vocabSize', 'bosId', 'eosId', 'padId', 'addsBos'] as const) if (ta[k] !== tb[k]) differs(k, ta[k], tb[k]);
  for (let id = 0; id < ta.vocabSize; id++) {
    const x = ta.decodeToken(id);
    const y = tb.decodeToken(id);
    if (x !== y) differs(`token ${id}`, x, y);
  }
  for (const text of PROBES) {
    const x = Array.from(ta.encode(text));
    const y = Array.from(tb.encode(text));
    if (x.join() !== y.join())
      return `same vocabulary, but its own tokenizer encodes ${JSON.stringify(text.slice(0, 24))}… differently; the pipeline's tokenizer is used for every precision`;
  }
  return null;
}
