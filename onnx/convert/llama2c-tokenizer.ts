/**
 * llama2.c's tokenizer file (tok512.bin, tokenizer.bin) → a Hugging Face Llama-style
 * SentencePiece-BPE tokenizer.json + tokenizer_config.json that @huggingface/tokenizers loads.
 *
 * The file holds a SentencePiece BPE vocabulary with scores (merge priority) and byte fallback:
 *   int32 max_token_length, then per token { float32 score, int32 len, len bytes }.
 * Pieces use ' ' where SentencePiece uses '▁'; BOS/EOS are stored as "\n<s>\n" / "\n</s>\n".
 * BPE merges are recovered like transformers' `generate_merges`: every split of a piece into two
 * in-vocabulary pieces is a merge, ranked by the merged piece's score.
 */
import { readFileSync } from 'node:fs';
import { QuantlensError } from '../../core/errors.ts';

export interface Llama2cVocab {
  maxTokenLength: number;
  pieces: string[];
  scores: number[];
}

const SPACE = '\u2581';
const SPECIALS = ['<unk>', '<s>', '</s>'];

export function readLlama2cTokenizer(file: string, vocabSize: number): Llama2cVocab {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new QuantlensError('CONVERT', `cannot read llama2.c tokenizer: ${(e as Error).message}`, file, { cause: e });
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const utf8 = new TextDecoder('utf-8');
  if (buf.length < 4) throw new QuantlensError('CONVERT', `tokenizer file is too short (${buf.length} bytes)`, file);
  const maxTokenLength = dv.getInt32(0, true);
  const pieces: string[] = [];
  const scores: number[] = [];
  let p = 4;
  for (let id = 0; id < vocabSize; id++) {
    if (p + 8 > buf.length) throw new QuantlensError('CONVERT', `tokenizer file ends at token ${id} of ${vocabSize} (byte ${p}); does it belong to this checkpoint?`, file);
    const score = dv.getFloat32(p, true);
    const len = dv.getInt32(p + 4, true);
    p += 8;
    if (len < 0 || p + len > buf.length) throw new QuantlensError('CONVERT', `token ${id} has bad length ${len} at byte ${p - 4}`, file);
    pieces.push(utf8.decode(buf.subarray(p, p + len)));
    scores.push(score);
    p += len;
  }
  if (p !== buf.length) throw new QuantlensError('CONVERT', `tokenizer file has ${buf.length - p} bytes after ${vocabSize} tokens; vocab size mismatch with the checkpoint?`, file);
  return { maxTokenLength, pieces, scores };
}

/** SentencePiece spelling: specials by name, ' ' → '▁'. */
export function sentencePiecePieces(vocab: Llama2cVocab): string[] {
  return vocab.pieces.map((p, id) => (id < SPECIALS.length ? SPECIALS[id] : p.replaceAll(' ', SPACE)));
}

const isByteToken = (p: string) => /^<0x[0-9A-F]{2}>$/.test(p);

/** BPE merges from a scored vocabulary (see file comment). */
export function mergesFromScores(pieces: string[], scores: number[]): [string, string][] {
  const vocab = new Set(pieces);
  const ranked: { left: string; right: string; score: number; order: number }[] = [];
  pieces.forEach((piece, id) => {
    if (id < SPECIALS.length || isByteToken(piece)) return;
    const chars = Array.from(piece); // code points, like Python str indexing
    // Longer left part first within one piece.
    for (let cut = chars.length - 1; cut >= 1; cut--) {
      const left = chars.slice(0, cut).join('');
      const right = chars.slice(cut).join('');
      if (vocab.has(left) && vocab.has(right)) ranked.push({ left, right, score: scores[id], order: ranked.length });
    }
  });
  ranked.sort((a, b) => b.score - a.score || a.order - b.order);
  return ranked.map((m) => [m.left, m.right]);
}

const addedToken = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

/** A Llama-style (SentencePiece BPE, byte fallback) tokenizer.json object. */
export function llamaTokenizerJson(pieces: string[], scores: number[]): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  pieces.forEach((p, id) => {
    if (p in vocab) throw new QuantlensError('CONVERT', `token "${p}" appears twice (ids ${vocab[p]} and ${id})`, 'tokenizer');
    vocab[p] = id;
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((s, id) => addedToken(id, s)),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SPACE }, { type: 'Replace', pattern: { String: ' ' }, content: SPACE }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: SPACE }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: mergesFromScores(pieces, scores),
    },
  };
}

/** tokenizer_config.json for a Llama SentencePiece tokenizer (BOS added, left padding). */
export function llamaTokenizerConfig(modelMaxLength: number): Record<string, unknown> {
  const decoder: Record<string, unknown> = {};
  SPECIALS.forEach((content, id) => {
    decoder[String(id)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  });
  return {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: decoder,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: '<unk>',
    clean_up_tokenization_spaces: false,
    legacy: true,
    model_max_length: modelMaxLength,
    padding_side: 'left',
    spaces_between_special_tokens: false,
    tokenizer_class: 'LlamaTokenizer',
  };
}

/** tokenizer.json + tokenizer_config.json contents for a llama2.c tokenizer file. */
export function convertLlama2cTokenizer(file: string, vocabSize: number, modelMaxLength: number): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } {
  const vocab = readLlama2cTokenizer(file, vocabSize);
  return { tokenizerJson: llamaTokenizerJson(sentencePiecePieces(vocab), vocab.scores), tokenizerConfig: llamaTokenizerConfig(modelMaxLength) };
}
