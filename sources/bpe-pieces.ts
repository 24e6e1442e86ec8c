/**
 * How quantlens drives @huggingface/tokenizers' BPE model on long pre-tokenized pieces, with
 * exactly the library's output.
 *
 * Llama-style SentencePiece tokenizers (Llama 2, Mistral, every llama2.c conversion, the demo's)
 * have no pre-tokenizer that splits words, so the BPE model gets the whole normalized prompt as
 * one piece and merges it from single characters every time (a priority queue over the piece,
 * one JSON.stringify'd rank lookup per candidate pair): about 2 µs a token, 5 % of the demo
 * bench model's stream. Nothing of that is cached, since a whole prompt is past the cache's
 * length cap (capPieceCache).
 *
 * splitAtUnjoinable cuts such a piece where no merge can ever join two neighbouring characters
 * and runs the library's own bpe() on each part (cached, as words are in byte-level BPE). It is
 * exact: a merge (a, b) joins the last character of a with the first of b, so if no merge has
 * (last of a, first of b) = (x, y), a boundary between x and y survives every merge of the whole
 * piece; the merges on either side never see each other (a pair across it has no rank, so it
 * never enters the queue), and each side's merges run in the same order as in the whole, since
 * the queue's tie-break only orders positions within a side. For SentencePiece vocabularies the
 * cuts fall before each '▁' that follows another character, i.e. at word starts. Not applied
 * where the model appends an end-of-word or continuing-subword suffix (those mark a word's
 * ends, which a cut would add). test/sources/bpe-pieces.test.ts compares ids with the plain
 * library on every tokenizer under ../shared and on crafted merges.
 */
import type { Tokenizer } from '@huggingface/tokenizers';

/** Longest pre-tokenized piece the BPE model's cache keeps (the library's default is 256 characters). */
export const PIECE_CACHE_CHARS = 32;

/** The parts of the library's BPE model this file uses (not in its typings). */
interface BpeModel {
  bpe(token: string): string[];
  merges: [string, string][];
  max_length_to_cache: number;
  end_of_word_suffix?: string | null;
  continuing_subword_suffix?: string | null;
}

function bpeModelOf(tok: Tokenizer): BpeModel | null {
  const model = (tok as unknown as { model?: Partial<BpeModel> }).model;
  if (!model || typeof model.bpe !== 'function' || !Array.isArray(model.merges) || typeof model.max_length_to_cache !== 'number') return null;
  return model as BpeModel;
}

/**
 * @huggingface/tokenizers' BPE caches each pre-tokenized piece up to 256 characters in a
 * 10,000-entry LRU. Where the pre-tokenizer does not split words (Metaspace without split, as the
 * demo's), a piece is a whole prompt: every prompt becomes an entry, and past 10k prompts each one
 * evicts an older entry that had already reached V8's old generation, so a run's old-generation
 * garbage (and peak RSS) grew with the prompt count. Word-sized pieces, what the cache is for,
 * are still cached.
 */
export function capPieceCache(tok: Tokenizer): void {
  const model = bpeModelOf(tok);
  if (model) model.max_length_to_cache = Math.min(model.max_length_to_cache, PIECE_CACHE_CHARS);
}

/** The (last character of a, first character of b) of every merge, as the two joined: the neighbours a merge can join. */
function joinablePairs(merges: [string, string][]): Set<string> {
  const pairs = new Set<string>();
  for (const [a, b] of merges) if (a && b) pairs.add(lastChar(a) + String.fromCodePoint(b.codePointAt(0)!));
  return pairs;
}

/** The last code point of s as a string (two UTF-16 units for a surrogate pair, as Array.from splits). */
function lastChar(s: string): string {
  const low = s.charCodeAt(s.length - 1);
  const high = s.length > 1 ? s.charCodeAt(s.length - 2) : 0;
  return low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff ? s.slice(-2) : s.slice(-1);
}

/**
 * Wrap the model's bpe() so that pieces longer than PIECE_CACHE_CHARS are cut where no merge
 * joins (see the header). True when applied; false for tokenizers it does not apply to (not
 * BPE, or word-end suffixes), which keep the library's path.
 */
export function splitAtUnjoinable(tok: Tokenizer): boolean {
  const model = bpeModelOf(tok);
  if (!model || model.end_of_word_suffix || model.continuing_subword_suffix) return false;
  const joinable = joinablePairs(model.merges);
  const whole = model.bpe.bind(model);
  model.bpe = (token: string): string[] => {
    if (token.length <= PIECE_CACHE_CHARS) return whole(token);
    const out: string[] = [];
    let start = 0;
    let prev = '';
    for (let i = 0; i < token.length; ) {
      const cp = token.codePointAt(i)!;
      const ch = cp > 0xffff ? token.slice(i, i + 2) : token[i];
      if (i > 0 && !joinable.has(prev + ch)) {
        for (const t of whole(token.slice(start, i))) out.push(t);
        start = i;
      }
      prev = ch;
      i += ch.length;
    }
    for (const t of whole(token.slice(start))) out.push(t);
    return out;
  };
  return true;
}
