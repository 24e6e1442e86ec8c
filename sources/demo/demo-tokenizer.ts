/**
 * The demo model's tokenizer, built in code: a Llama-style SentencePiece BPE with byte fallback
 * (the same tokenizer.json shape as converted llama2.c models), so any text encodes.
 * Vocabulary: <unk> 0 (also the pad), <s> 1, </s> 2, byte tokens <0x00>..<0xFF> (3..258),
 * '▁' and the printable ASCII characters, then whole words (and every prefix a BPE merge
 * needs) common in the demo prompts. Earlier pieces get higher scores, i.e. merge first.
 */
import { llamaTokenizerConfig, llamaTokenizerJson } from '../../onnx/convert/llama2c-tokenizer.ts';

const SPACE = '\u2581';

/** Words given their own tokens; each adds its '▁'-prefixed prefixes as intermediate pieces. */
const WORDS = ['the', 'is', 'of', 'a', 'True', 'False', 'Answer', 'Respond', 'with', 'or', 'only', 'than', 'bigger', 'smaller', 'equal', 'plus', 'minus', 'even', 'odd', 'number'];

export function demoVocabulary(): { pieces: string[]; scores: number[] } {
  const pieces = ['<unk>', '<s>', '</s>'];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const seen = new Set(pieces);
  const add = (p: string) => {
    if (!seen.has(p)) {
      seen.add(p);
      pieces.push(p);
    }
  };
  add(SPACE);
  for (let c = 33; c < 127; c++) add(String.fromCharCode(c));
  for (const w of WORDS) {
    const chars = Array.from(SPACE + w);
    for (let n = 2; n <= chars.length; n++) add(chars.slice(0, n).join(''));
  }
  // Specials and bytes score 0; pieces after them score -rank (SentencePiece's convention).
  const scores = pieces.map((_, id) => (id < 259 ? 0 : -(id - 259)));
  return { pieces, scores };
}

export function demoTokenizerFiles(modelMaxLength: number): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown>; vocabSize: number } {
  const { pieces, scores } = demoVocabulary();
  return { tokenizerJson: llamaTokenizerJson(pieces, scores), tokenizerConfig: llamaTokenizerConfig(modelMaxLength), vocabSize: pieces.length };
}
