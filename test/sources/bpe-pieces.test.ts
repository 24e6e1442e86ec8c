import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { splitAtUnjoinable, PIECE_CACHE_CHARS } from '../../sources/bpe-pieces.ts';
import { demoTokenizerFiles } from '../../sources/demo/demo-tokenizer.ts';
import { demoPrompts } from '../../sources/demo/demo-prompts.ts';
import { sharedPath } from '../helpers/shared.ts';

/** ids of `texts` from the plain library and from the same tokenizer with splitAtUnjoinable; the first text that differs. */
function compare(json: Record<string, unknown>, config: Record<string, unknown>, texts: string[]): { applied: boolean; differs: string | null } {
  const plain = new Tokenizer(json, config);
  const fast = new Tokenizer(json, config);
  const applied = splitAtUnjoinable(fast);
  for (const t of texts) {
    const a: number[] = plain.encode(t, { add_special_tokens: true }).ids;
    const b: number[] = fast.encode(t, { add_special_tokens: true }).ids;
    if (a.length !== b.length || a.some((x, i) => x !== b[i])) return { applied, differs: t };
  }
  return { applied, differs: null };
}

/** Deterministic strings over `alphabet`, long enough to pass PIECE_CACHE_CHARS. */
function randomStrings(alphabet: string[], count: number, seed: number): string[] {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Array.from({ length: count }, () => {
    const len = PIECE_CACHE_CHARS + 1 + Math.floor(next() * 150);
    return Array.from({ length: len }, () => alphabet[Math.floor(next() * alphabet.length)]).join('');
  });
}

/** A bare BPE model (no normalizer or pre-tokenizer: the whole text is one piece) over a, b, c and '▁'. */
function craftedJson(merges: string[]): Record<string, unknown> {
  const vocab: Record<string, number> = { '<unk>': 0 };
  for (const p of ['a', 'b', 'c', '▁', ...merges.map((m) => m.replace(' ', ''))]) vocab[p] ??= Object.keys(vocab).length;
  return { version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: 'BPE', vocab, merges, unk_token: '<unk>' } };
}

const TRICKY = [
  'Hello  world\t\ttabs\nnew lines\n\n  and   runs of     spaces at the end    ',
  'émigré naïve façade Ünïcödé — “quotes” … 1234567890 3.14159 -42',
  'emoji 😀😃😄 flags 🇩🇪🇫🇷 astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 mixed😀words😀here and a lone surrogate \ud800 end',
  '中文文本没有空格但也很长，日本語のテキストもある。한국어 텍스트도 있습니다',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
  'https://example.com/a/very/long/url/without/any/spaces/at/all?query=string&and=more#fragment',
  '<s> literal specials </s> <unk> inside the text, and short',
];

test('crafted merges: cut only where no merge joins; a cut that ignores the merges changes ids', () => {
  // "c ▁" joins c with a following '▁', so a cut before every '▁' would be wrong after 'c'.
  const merges = ['a b', 'ab c', 'c ▁', '▁ a', '▁a b', 'b b', 'abc ▁'];
  const json = craftedJson(merges);
  const texts = randomStrings(['a', 'b', 'c', '▁'], 300, 1);
  const r = compare(json, {}, texts);
  assert.ok(r.applied);
  assert.is(r.differs, null, `differs on ${r.differs}`);

  // The negative control: cutting before every '▁' regardless of the merges differs from the library.
  const plain = new Tokenizer(json, {});
  const naive = new Tokenizer(json, {});
  const model = (naive as unknown as { model: { bpe(t: string): string[] } }).model;
  const whole = model.bpe.bind(model);
  model.bpe = (t: string) => t.split(/(?=▁)/).flatMap((part) => whole(part));
  const differs = texts.some((t) => plain.encode(t).ids.join() !== naive.encode(t).ids.join());
  assert.ok(differs, 'the crafted merges must make a naive cut wrong, or this test proves nothing');
});

test('crafted merges with no joins across "▁": every text still identical', () => {
  const r = compare(craftedJson(['a b', 'ab c', '▁ a', '▁a b', 'b b', '▁ ▁']), {}, randomStrings(['a', 'b', 'c', '▁', 'd'], 300, 2));
  assert.ok(r.applied);
  assert.is(r.differs, null, `differs on ${r.differs}`);
});

test('word-end suffixes: not applied (a cut would add word ends)', () => {
  const json = craftedJson(['a b']);
  (json.model as Record<string, unknown>).end_of_word_suffix = '</w>';
  assert.not.ok(splitAtUnjoinable(new Tokenizer(json, {})));
  const json2 = craftedJson(['a b']);
  (json2.model as Record<string, unknown>).continuing_subword_suffix = '##';
  assert.not.ok(splitAtUnjoinable(new Tokenizer(json2, {})));
});

test('demo tokenizer: identical ids on the demo prompts and tricky texts', () => {
  const { tokenizerJson, tokenizerConfig } = demoTokenizerFiles(512);
  const texts = [...demoPrompts().map((p) => p.prompt), ...TRICKY, demoPrompts().map((p) => p.prompt).join(' ')];
  const r = compare(tokenizerJson, tokenizerConfig, texts);
  assert.ok(r.applied);
  assert.is(r.differs, null, `differs on ${r.differs}`);
});

/** Every tokenizer.json under dir (depth-first). */
function tokenizerFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tokenizerFiles(p));
    else if (name === 'tokenizer.json') out.push(p);
  }
  return out;
}

/** The first `rows` data lines of a CSV, whole (quotes and commas included: any text will do). */
function csvLines(file: string, rows: number): string[] {
  return readFileSync(file, 'utf8').split('\n').slice(1, rows + 1).filter((l) => l.length > 0);
}

test('every tokenizer under ../shared: identical ids on dataset rows and tricky texts', () => {
  const models = sharedPath('models', 'BPE piece cuts vs the plain library on shared tokenizers');
  const datasets = sharedPath('datasets', 'BPE piece cuts vs the plain library on shared tokenizers');
  if (!models || !datasets) return;
  const texts = [...TRICKY, ...['boolq', 'piqa', 'hellaswag', 'toxicity'].flatMap((d) => csvLines(path.join(datasets, `${d}.csv`), 40))];
  const files = tokenizerFiles(models);
  assert.ok(files.length >= 10, `expected the exporter folders' tokenizers, found ${files.length}`);
  let applied = 0;
  for (const f of files) {
    const configFile = path.join(path.dirname(f), 'tokenizer_config.json');
    const config = existsSync(configFile) ? JSON.parse(readFileSync(configFile, 'utf8')) : {};
    const r = compare(JSON.parse(readFileSync(f, 'utf8')), config, texts);
    assert.is(r.differs, null, `${f}: differs on ${JSON.stringify(r.differs)}`);
    if (r.applied) applied++;
  }
  // Every shared tokenizer is BPE without word-end suffixes, so every one takes the cut path.
  assert.is(applied, files.length);
});

test.run();
