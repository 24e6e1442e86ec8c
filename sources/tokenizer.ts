/**
 * Text tokenizers from a Hugging Face folder (tokenizer.json + tokenizer_config.json), run with
 * the pure-JS `@huggingface/tokenizers` (offline, no native code). This file adds what the
 * library leaves to transformers: the BOS rule of tokenizer_config (`add_bos_token`), the pad id
 * fallback chain, and truncation that keeps BOS.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { QuantlensError } from '../core/errors.ts';
import { capPieceCache, splitAtUnjoinable } from './bpe-pieces.ts';
import type { ModelFolder } from './model/folder.ts';

export interface TextTokenizer {
  /** Highest id the tokenizer can produce + 1 (added tokens included, like HF `len(tokenizer)`). */
  vocabSize: number;
  bosId: number | null;
  eosId: number | null;
  padId: number;
  /** True when encode() puts BOS first. */
  addsBos: boolean;
  /** Token ids; BOS (when addsBos) exactly once at the start, no EOS unless the post-processor adds it. */
  encode(text: string): Int32Array;
  /** One token as text, the way HF `decode([id])` shows it (special tokens kept). */
  decodeToken(id: number): string;
  decode(ids: ArrayLike<number>): string;
  idOf(token: string): number | undefined;
}

function readJson(file: string, required: boolean): Record<string, any> | null {
  if (!existsSync(file)) {
    if (required) throw new QuantlensError('TOKENIZER', `tokenizer file not found`, file);
    return null;
  }
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new QuantlensError('TOKENIZER', `malformed JSON: ${(e as Error).message}`, file, { cause: e });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new QuantlensError('TOKENIZER', `expected a JSON object`, file);
  }
  return value as Record<string, any>;
}

/** tokenizer_config writes special tokens either as a string or as an AddedToken object. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as any).content === 'string') return (v as any).content;
  return null;
}

function firstId(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0]; // eos_token_id may be a list
  return null;
}

/**
 * tokenizer.json sections that Hugging Face treats as optional (absent = none) but the JS library
 * requires as keys: an export without a "decoder" or "normalizer" is valid and loads in Python.
 */
function withOptionalSections(json: Record<string, any>): Record<string, any> {
  const out = { ...json };
  for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) out[k] ??= null;
  out.added_tokens ??= [];
  return out;
}

/** Highest id + 1 in tokenizer.json itself: model.vocab (BPE/WordPiece map, Unigram list) and added_tokens. */
function idRangeOf(json: Record<string, any>): number {
  let n = 0;
  const vocab = json.model?.vocab;
  if (Array.isArray(vocab)) n = vocab.length;
  else if (vocab && typeof vocab === 'object') for (const id of Object.values(vocab)) if (typeof id === 'number') n = Math.max(n, id + 1);
  for (const t of Array.isArray(json.added_tokens) ? json.added_tokens : []) if (typeof t?.id === 'number') n = Math.max(n, t.id + 1);
  return n;
}

export async function loadTokenizer(folder: string): Promise<TextTokenizer> {
  const tokenizerFile = path.join(folder, 'tokenizer.json');
  const configFile = path.join(folder, 'tokenizer_config.json');
  const tokenizerJson = readJson(tokenizerFile, true)!;
  // tokenizer_config.json is optional: some exports only ship tokenizer.json.
  const tokConfig = readJson(configFile, false) ?? {};
  // config.json may live beside it (pad/bos/eos ids as numbers); unreadable → ignored here,
  // openModelFolder reports it as a MODEL error.
  let modelConfig: Record<string, any> = {};
  try {
    modelConfig = readJson(path.join(folder, 'config.json'), false) ?? {};
  } catch {
    modelConfig = {};
  }
  if (!tokenizerJson.model || typeof tokenizerJson.model !== 'object') {
    throw new QuantlensError('TOKENIZER', `no "model" section`, tokenizerFile);
  }

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(withOptionalSections(tokenizerJson), tokConfig);
  } catch (e) {
    throw new QuantlensError('TOKENIZER', `cannot build tokenizer: ${(e as Error).message}`, tokenizerFile, { cause: e });
  }

  capPieceCache(tok);
  splitAtUnjoinable(tok);

  const idOf = (token: string): number | undefined => tok.token_to_id(token) ?? undefined;
  const specialId = (key: string): number | null => {
    const content = tokenContent(tokConfig[key]);
    const fromTokenizer = content === null ? undefined : idOf(content);
    return fromTokenizer ?? firstId(modelConfig[`${key}_id`]);
  };
  const bosId = specialId('bos_token');
  const eosId = specialId('eos_token');
  const padId = specialId('pad_token') ?? eosId ?? 0;

  // The real id range: the highest id of the model vocabulary or the added tokens, + 1.
  let vocabSize = idRangeOf(tokenizerJson);
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  // Does the post-processor (e.g. TemplateProcessing "<s> $A") already put BOS in front?
  const probe = 'a';
  const plain = tok.encode(probe, { add_special_tokens: false }).ids;
  const special = tok.encode(probe, { add_special_tokens: true }).ids;
  const postProcessorAddsBos = bosId !== null && special.length > plain.length && special[0] === bosId && plain[0] !== bosId;
  // transformers' Llama-style tokenizers obey add_bos_token over the stored template.
  const addsBos = bosId !== null && (typeof tokConfig.add_bos_token === 'boolean' ? tokConfig.add_bos_token : postProcessorAddsBos);

  const encode = (text: string): Int32Array => {
    let ids = tok.encode(text, { add_special_tokens: true }).ids;
    if (postProcessorAddsBos && !addsBos) ids = ids.slice(1);
    if (addsBos) {
      // Exactly one BOS: drop any the text itself spelled (e.g. a literal "<s>" after the template's).
      let start = 0;
      while (start < ids.length && ids[start] === bosId) start++;
      return Int32Array.from([bosId!, ...ids.slice(start)]);
    }
    return Int32Array.from(ids);
  };

  const decode = (ids: ArrayLike<number>): string => tok.decode(Array.from(ids), { skip_special_tokens: false });

  return {
    vocabSize,
    bosId,
    eosId,
    padId,
    addsBos,
    encode,
    decodeToken: (id: number) => decode([id]),
    decode,
    idOf,
  };
}

/**
 * Cut ids to maxLen. keep='left' keeps the start, keep='right' keeps the end; with keep='right'
 * a leading BOS (ids[0] === bosId) stays first, since the model was trained to see it there.
 */
export function truncate(
  ids: Int32Array,
  maxLen: number,
  keep: 'left' | 'right',
  bosId: number | null = null,
): { ids: Int32Array; truncated: boolean } {
  if (!Number.isInteger(maxLen) || maxLen < 1) throw new RangeError(`maxLen must be a positive integer, got ${maxLen}`);
  if (ids.length <= maxLen) return { ids, truncated: false };
  if (keep === 'left') return { ids: ids.slice(0, maxLen), truncated: true };
  if (bosId !== null && ids[0] === bosId) {
    const out = new Int32Array(maxLen);
    out[0] = bosId;
    out.set(ids.subarray(ids.length - (maxLen - 1)), 1);
    return { ids: out, truncated: true };
  }
  return { ids: ids.slice(ids.length - maxLen), truncated: true };
}

/** How a set of labels (choices such as " True", " False") continues a context, token by token. */
export interface LabelSplit {
  /** encode(context). */
  contextIds: Int32Array;
  /** Leading tokens of contextIds that every label's encoding keeps (a merge across the boundary shortens it). */
  kept: number;
  /** Tokens every label shares after the kept context: fed (teacher-forced) before the distinguishing token. */
  prefix: number[];
  /** Per label, in order: the first token that tells it apart from the others. */
  tokens: number[];
}

/**
 * The labels' continuations of `context`, split as lm-evaluation-harness splits a continuation
 * (encode(context + label) minus its common prefix with encode(context)), then at the first token
 * where they differ. SentencePiece vocabularies without a "▁True" piece encode " True" as
 * ▁ + True…, so the first token alone is the same word boundary for every label. Returns a
 * one-line reason instead when no single token tells the labels apart.
 */
export function splitLabels(tok: TextTokenizer, labels: string[], context = ''): LabelSplit | string {
  const contextIds = tok.encode(context);
  const exact = labels.map((l) => tok.idOf(l));
  // Labels spelled as vocabulary entries (e.g. "▁the") are those tokens, whatever the context.
  if (context === '' && exact.every((id) => id !== undefined) && new Set(exact).size === labels.length)
    return { contextIds, kept: contextIds.length, prefix: [], tokens: exact as number[] };
  const wholes = labels.map((l) => Array.from(tok.encode(context + l)));
  const common = (w: number[]) => {
    let k = 0;
    while (k < contextIds.length && k < w.length && contextIds[k] === w[k]) k++;
    return k;
  };
  const kept = Math.min(...wholes.map(common));
  const conts = wholes.map((w) => w.slice(kept));
  const q = (i: number) => JSON.stringify(labels[i]);
  const empty = conts.findIndex((c) => c.length === 0);
  if (empty >= 0) return `${q(empty)} adds no token after the prompt`;
  let at = 0;
  // A single label is told apart by its first token.
  while (labels.length > 1 && conts.every((c) => at < c.length && c[at] === conts[0][at])) at++;
  for (let i = 0; i < conts.length; i++) {
    if (at >= conts[i].length) return `${q(i)} is a token prefix of ${q(conts.findIndex((c, j) => j !== i && c.length > at))}, so no single token tells them apart`;
    const twin = conts.findIndex((c, j) => j < i && c[at] === conts[i][at]);
    if (twin >= 0) return `no single token tells ${q(twin)} and ${q(i)} apart (both continue with token ${conts[i][at]} after ${at} shared token(s))`;
  }
  return { contextIds, kept, prefix: conts[0].slice(0, at), tokens: conts.map((c) => c[at]) };
}

/**
 * The token id that stands for `label` among `labels` after `context`: the first token that
 * tells the labels apart (splitLabels). A label alone is the first token of its encoding (the
 * exact vocabulary entry when there is one); undefined when it does not tokenize. Throws a
 * one-line CONFIG error when no single token distinguishes the labels.
 */
export function labelTokenId(tok: TextTokenizer, label: string, labels: string[] = [label], context = ''): number | undefined {
  const i = labels.indexOf(label);
  if (i < 0) throw new RangeError(`label ${JSON.stringify(label)} is not among the labels`);
  if (labels.length === 1 && context === '') {
    const id = tok.idOf(label);
    if (id !== undefined) return id;
    return Array.from(tok.encode(label)).find((x) => x !== tok.bosId);
  }
  const split = splitLabels(tok, labels, context);
  if (typeof split === 'string') throw new QuantlensError('CONFIG', `scoring.choices: ${split}; use scoring.mode: loglik`, 'scoring.choices');
  return split.tokens[i];
}

/** Refuse a tokenizer that can emit ids the model's embedding table does not have. */
export function checkTokenizerFitsModel(tok: TextTokenizer, folder: ModelFolder, where?: string): void {
  if (folder.vocabSize !== null && tok.vocabSize > folder.vocabSize) {
    throw new QuantlensError(
      'TOKENIZER',
      `tokenizer vocabulary (${tok.vocabSize}) exceeds the model's (${folder.vocabSize})`,
      where ?? folder.tokenizerDir,
    );
  }
}
