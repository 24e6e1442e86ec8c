import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { loadTokenizer, truncate, checkTokenizerFitsModel, labelTokenId, splitLabels } from '../../sources/tokenizer.ts';
import { openModelFolder } from '../../sources/model/folder.ts';
import { QuantlensError } from '../../core/errors.ts';
import { sharedPath } from '../helpers/shared.ts';
import { tempDir } from '../helpers/temp.ts';

async function rejects(fn: () => Promise<unknown>, check: (e: any) => boolean, what: string): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.ok(check(e), `${what}: unexpected error ${(e as Error).message}`);
    return;
  }
  assert.unreachable(`${what}: should have thrown`);
}

/** Minimal RFC 4180 reader (quoted fields with commas, "" and newlines), independent of sources/dataset. */
function readCsv(file: string): Record<string, string>[] {
  const text = readFileSync(file, 'utf8');
  const rows: string[][] = [];
  let row: string[] = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field); field = ''; rows.push(row); row = [];
    } else field += c;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  const [header, ...body] = rows;
  return body.map((r) => Object.fromEntries(header.map((h, j) => [h, r[j]])));
}

/** llama2.c's tokenizer: tok512.bin pieces + scores, and its encode() (run.c) re-implemented. */
function readLlama2cTokenizer(file: string): { pieces: string[]; scores: number[] } {
  const buf = readFileSync(file);
  let off = 4; // max_token_length
  const pieces: string[] = [], scores: number[] = [];
  for (let i = 0; i < 512; i++) {
    scores.push(buf.readFloatLE(off));
    const len = buf.readInt32LE(off + 4);
    pieces.push(buf.subarray(off + 8, off + 8 + len).toString('utf8'));
    off += 8 + len;
  }
  return { pieces, scores };
}

function llama2cEncode(text: string, tk: { pieces: string[]; scores: number[] }): number[] {
  const lookup = new Map<string, number>();
  tk.pieces.forEach((p, i) => { if (!lookup.has(p)) lookup.set(p, i); });
  const tokens = [1]; // BOS
  if (text.length > 0) tokens.push(lookup.get(' ')!); // dummy prefix space
  for (const ch of text) {
    const id = lookup.get(ch);
    if (id !== undefined) tokens.push(id);
    else for (const byte of Buffer.from(ch, 'utf8')) tokens.push(byte + 3); // byte fallback: <0x00> is id 3
  }
  for (;;) {
    let best = -1e10, bestId = -1, bestIdx = -1;
    for (let i = 0; i + 1 < tokens.length; i++) {
      const id = lookup.get(tk.pieces[tokens[i]] + tk.pieces[tokens[i + 1]]);
      if (id !== undefined && tk.scores[id] > best) { best = tk.scores[id]; bestId = id; bestIdx = i; }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

test('stories260K: encode matches llama2.c BPE on BoolQ prompts and non-ASCII texts', async () => {
  const model = sharedPath('models/stories260K-onnx', 'tokenizer vs llama2.c');
  const tokBin = sharedPath('models/stories260K/tok512.bin', 'tokenizer vs llama2.c');
  const boolq = sharedPath('datasets/boolq.csv', 'tokenizer vs llama2.c');
  const others = ['toxicity', 'piqa', 'hellaswag'].map((n) => sharedPath(`datasets/${n}.csv`, 'tokenizer vs llama2.c'));
  if (!model || !tokBin || !boolq || others.includes(null)) return;
  const tok = await loadTokenizer(model);
  const ref = readLlama2cTokenizer(tokBin);
  const texts = readCsv(boolq).slice(0, 200).map((r) => `Respond with True or False only.\n${r.prompt}\nAnswer:`);
  for (const file of others) {
    const rows = readCsv(file!);
    texts.push(...rows.slice(0, 10).map((r) => r.prompt));
    texts.push(...rows.filter((r) => /[^\x00-\x7f]/.test(r.prompt)).slice(0, 15).map((r) => r.prompt));
  }
  texts.push('', ' ', 'a', '  two  spaces', 'tab\there', 'é 你 🙂', 'Once upon a time');
  assert.ok(texts.some((t) => /[^\x00-\x7f]/.test(t)), 'the set covers byte fallback');
  let checked = 0;
  for (const text of texts) {
    const got = Array.from(tok.encode(text));
    assert.equal(got, llama2cEncode(text, ref), JSON.stringify(text.slice(0, 60)));
    assert.is(got.filter((id) => id === 1).length, 1, 'BOS exactly once');
    assert.is(got[0], 1);
    checked++;
  }
  assert.is(checked, texts.length);
  assert.ok(checked >= 240, `${checked} texts`);
});

test('stories260K: special ids, BOS not doubled, decodeToken as HF decode([id])', async () => {
  const model = sharedPath('models/stories260K-onnx', 'tokenizer specials');
  const refFile = sharedPath('models/stories260K/reference_greedy.json', 'tokenizer specials');
  const tokBin = sharedPath('models/stories260K/tok512.bin', 'tokenizer specials');
  if (!model || !refFile || !tokBin) return;
  const tok = await loadTokenizer(model);
  const cfg = JSON.parse(readFileSync(path.join(model, 'config.json'), 'utf8'));
  assert.is(tok.bosId, cfg.bos_token_id);
  assert.is(tok.eosId, cfg.eos_token_id);
  assert.is(tok.padId, tok.idOf('<unk>')); // tokenizer_config pad_token "<unk>"
  assert.is(tok.vocabSize, cfg.vocab_size);
  assert.ok(tok.addsBos);
  assert.equal(Array.from(tok.encode('<s>Once')).filter((id) => id === 1).length, 1);

  const ref = JSON.parse(readFileSync(refFile, 'utf8'));
  const pieces = readLlama2cTokenizer(tokBin).pieces;
  const first = ref.greedy_token_ids[0];
  assert.is(first, 403);
  // decode rule of reference_greedy.json: strip one leading space from the first piece after BOS.
  const expected = pieces[first].replace(/^ /, '');
  assert.ok(ref.text.startsWith(expected));
  assert.is(tok.decodeToken(first), expected);
  assert.is(tok.decode(ref.greedy_token_ids), ref.text);
  assert.is(tok.decodeToken(13), '\n'); // byte-fallback <0x0A>
});

test('stories260K: labelTokenId is the vocabulary entry, else the first non-BOS token of the encoding', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'labelTokenId');
  if (!dir) return;
  const tok = await loadTokenizer(dir);
  const vocab = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')).model.vocab as Record<string, number>;
  assert.is(labelTokenId(tok, '<s>'), 1);
  assert.is(labelTokenId(tok, '▁the'), vocab['▁the']);
  const ids = Array.from(tok.encode(' True'));
  assert.is(ids[0], 1);
  assert.is(labelTokenId(tok, ' True'), ids[1]);
});

test('stories260K: splitLabels finds the first token that tells the labels apart, alone and after a prompt', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'splitLabels');
  if (!dir) return;
  const tok = await loadTokenizer(dir);
  const enc = (s: string) => Array.from(tok.encode(s));
  // Alone, both labels start with the word boundary ▁ (the old rule's shared "token").
  const t = enc(' True'), f = enc(' False');
  assert.is(t[1], f[1]);
  const alone = splitLabels(tok, [' True', ' False']);
  assert.ok(typeof alone !== 'string');
  let d = 1;
  while (t[d] === f[d]) d++;
  assert.equal(alone, { contextIds: tok.encode(''), kept: 1, prefix: t.slice(1, d), tokens: [t[d], f[d]] });
  // After a prompt: the continuation of encode(prompt + label) beyond encode(prompt).
  const prompt = 'Is the sky blue?\nAnswer:';
  const p = enc(prompt), pt = enc(prompt + ' True'), pf = enc(prompt + ' Trust');
  assert.equal(pt.slice(0, p.length), p);
  let k = p.length;
  while (pt[k] === pf[k]) k++;
  const inContext = splitLabels(tok, [' True', ' Trust'], prompt);
  assert.ok(typeof inContext !== 'string');
  assert.equal([inContext.kept, inContext.prefix, inContext.tokens], [p.length, pt.slice(p.length, k), [pt[k], pf[k]]]);
  assert.ok(k > p.length, 'True/Trust share leading tokens');
  assert.is(labelTokenId(tok, ' Trust', [' True', ' Trust'], prompt), pf[k]);
  // No single token: a token prefix, or two of three labels continuing alike.
  assert.match(splitLabels(tok, [' True', ' True!'], prompt) as string, /" True" is a token prefix of " True!"/);
  assert.match(splitLabels(tok, [' yes', ' no', ' nope'], prompt) as string, /no single token tells " no" and " nope" apart/);
  assert.throws(() => labelTokenId(tok, ' True', [' True', ' True!'], prompt), /use scoring\.mode: loglik/);
});

test('truncate keeps the requested side and BOS', () => {
  const ids = Int32Array.from([1, 10, 11, 12, 13, 14]);
  assert.equal(truncate(ids, 10, 'left'), { ids, truncated: false });
  assert.equal(Array.from(truncate(ids, 3, 'left').ids), [1, 10, 11]);
  assert.ok(truncate(ids, 3, 'left').truncated);
  assert.equal(Array.from(truncate(ids, 3, 'right', 1).ids), [1, 13, 14]);
  assert.equal(Array.from(truncate(ids, 3, 'right').ids), [12, 13, 14]);
  assert.equal(Array.from(truncate(ids, 3, 'right', 99).ids), [12, 13, 14]);
  assert.equal(Array.from(truncate(ids, 6, 'right', 1).ids), Array.from(ids));
  // brute force over every length: result = BOS + suffix, never longer than maxLen
  for (let n = 1; n <= 7; n++) {
    const r = truncate(ids, n, 'right', 1).ids;
    assert.is(r.length, Math.min(n, ids.length));
    assert.is(r[0], 1);
    if (n > 1) assert.equal(Array.from(r.subarray(1)), Array.from(ids.subarray(ids.length - (r.length - 1))));
  }
});

test('gpt2 fixture: tokenizer vocabulary larger than the model is refused', async () => {
  const dir = sharedPath('models/tiny-random-gpt2-fp32', 'tokenizer vs model vocab');
  if (!dir) return;
  const tok = await loadTokenizer(dir);
  const folder = await openModelFolder(dir);
  const tj = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const maxId = Math.max(...Object.values(tj.model.vocab as Record<string, number>), ...tj.added_tokens.map((t: any) => t.id));
  assert.is(tok.vocabSize, maxId + 1);
  assert.is(folder.vocabSize, 1000);
  assert.is(tok.addsBos, false);
  assert.is(tok.padId, 98); // no pad_token in tokenizer_config → config.json pad_token_id
  try {
    checkTokenizerFitsModel(tok, folder, 'pipeline.yaml:3 (model)');
    assert.unreachable('should refuse');
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.is((e as QuantlensError).code, 'TOKENIZER');
    assert.match((e as Error).message, `tokenizer vocabulary (${maxId + 1}) exceeds the model's (1000)`);
  }
  const stories = sharedPath('models/stories260K-onnx', 'tokenizer fits');
  if (!stories) return;
  checkTokenizerFitsModel(await loadTokenizer(stories), await openModelFolder(stories)); // no throw
});

test('missing or malformed tokenizer files give TOKENIZER errors naming the file', async () => {
  const dir = tempDir('ql-tok-');
  await rejects(() => loadTokenizer(dir), (e) => e.code === 'TOKENIZER' && e.message.includes('tokenizer.json'), 'missing');
  writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
  await rejects(() => loadTokenizer(dir), (e) => e.code === 'TOKENIZER' && /malformed JSON/.test(e.message), 'malformed');
  const stories = sharedPath('models/stories260K-onnx', 'tokenizer config errors');
  if (!stories) return;
  copyFileSync(path.join(stories, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  writeFileSync(path.join(dir, 'tokenizer_config.json'), 'not json');
  await rejects(() => loadTokenizer(dir), (e) => e.code === 'TOKENIZER' && e.message.includes('tokenizer_config.json'), 'bad config');
});

test.run();
