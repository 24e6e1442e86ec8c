/**
 * JSON Lines: one JSON object per line, read one chunk at a time. Blank lines are skipped (they
 * count for line numbers, not for example_id). A malformed line is a DATASET error naming
 * `file.jsonl:LINE`. Values become strings via fieldText().
 */
import type { DatasetRecord } from '../../core/types.ts';
import { QuantlensError } from '../../core/errors.ts';
import { fieldText, fieldsFromEntries } from './field-text.ts';
import { readTextChunks, type ChunkOptions } from './text-chunks.ts';

interface JsonlLine {
  text: string;
  /** 1-based physical line number. */
  line: number;
}

/** Non-blank lines of the file, with their line numbers, pulled one read-chunk at a time. */
async function* readNonBlankLines(path: string, options: ChunkOptions): AsyncGenerator<JsonlLine> {
  let carry = ''; // an incomplete last line from the previous chunk
  let line = 0;
  for await (const chunk of readTextChunks(path, options)) {
    const text = carry + chunk;
    let from = 0;
    // The carry holds no newline, so search only the new text: a long line stays linear.
    for (let nl = text.indexOf('\n', carry.length); nl !== -1; nl = text.indexOf('\n', from)) {
      line++;
      const body = text.slice(from, nl);
      from = nl + 1;
      if (body.trim() !== '') yield { text: body, line };
    }
    carry = text.slice(from);
  }
  line++;
  if (carry.trim() !== '') yield { text: carry, line }; // last line without a trailing newline
}

function parseObject(path: string, { text, line }: JsonlLine): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new QuantlensError('DATASET', `invalid JSON (${(e as Error).message})`, `${path}:${line}`, { cause: e });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    throw new QuantlensError('DATASET', `expected a JSON object, got ${kind}`, `${path}:${line}`);
  }
  return value as Record<string, unknown>;
}

/** Records in file order; example_id counts non-blank lines from 0. */
export async function* readJsonlRecords(path: string, options: ChunkOptions = {}): AsyncGenerator<DatasetRecord> {
  let example_id = 0;
  for await (const line of readNonBlankLines(path, options)) {
    const object = parseObject(path, line);
    const fields = fieldsFromEntries(Object.entries(object).map(([k, v]) => [k, fieldText(v)] as const));
    yield { example_id: example_id++, fields };
  }
}

/** Column names = keys of the first record; reads only up to that line. */
export async function readJsonlColumns(path: string, options: ChunkOptions = {}): Promise<string[]> {
  for await (const line of readNonBlankLines(path, options)) return Object.keys(parseObject(path, line));
  throw new QuantlensError('DATASET', `${path}: no records, so its columns are unknown`);
}
