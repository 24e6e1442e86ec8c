/**
 * RFC 4180 CSV, read incrementally. The tokenizer is a char-by-char state machine fed decoded
 * text pieces of any size; a quoted field, a CRLF or a multi-byte character may straddle two
 * pieces. Rows are reported with the physical line (1-based) where they start, so every error
 * can say `data.csv:17: ...`.
 *
 * Accepted: header row required; quoted fields holding commas, CR/LF and "" (an escaped quote);
 * CRLF, LF or lone-CR line ends; a UTF-8 BOM (dropped). Completely blank lines are skipped
 * (they count for line numbers, not for example_id).
 * Rejected (DATASET error with file:line): unterminated quoted field at EOF, a quote inside an
 * unquoted field, text after a closing quote, a row whose field count differs from the header,
 * a duplicate header name.
 */
import type { DatasetRecord } from '../../core/types.ts';
import { QuantlensError } from '../../core/errors.ts';
import { fieldsFromEntries } from './field-text.ts';
import { readTextChunks, type ChunkOptions } from './text-chunks.ts';

export interface CsvRow {
  fields: string[];
  /** Physical line (1-based) on which the row starts. */
  line: number;
}

const QUOTE = 34, COMMA = 44, LF = 10, CR = 13;

/** Tokenizer states (plain numbers: no enum, so the file is erasable TypeScript). */
const State = {
  FieldStart: 0,
  Unquoted: 1,
  Quoted: 2,
  /** A quote was seen inside a quoted field: either an escaped "" or the closing quote. */
  QuoteInQuoted: 3,
  /** A CR ended a row; swallow one LF that may follow (CRLF). */
  AfterCr: 4,
} as const;
type State = (typeof State)[keyof typeof State];

/** Incremental CSV tokenizer: push() text pieces, then finish() at end of file. */
export class CsvTokenizer {
  private state: State = State.FieldStart;
  private fields: string[] = [];
  private pending = '';
  private anyQuoted = false;
  private line = 1;
  private rowLine = 1;
  private quoteLine = 1;

  /** `path` is only used to name the file in error messages. */
  private readonly path: string;
  constructor(path: string) {
    this.path = path;
  }

  /** Consumes `text`; completed rows are appended to `out`. */
  push(text: string, out: CsvRow[]): void {
    const n = text.length;
    let start = 0; // first char of the current field's text not yet copied into `pending`
    let i = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      switch (this.state) {
        case State.FieldStart:
          if (c === QUOTE) {
            this.state = State.Quoted;
            this.quoteLine = this.line;
            this.anyQuoted = true;
            start = i + 1;
          } else if (c === COMMA) {
            this.fields.push('');
          } else if (c === LF) {
            this.fields.push('');
            this.endRow(out);
            this.newLine();
          } else if (c === CR) {
            this.fields.push('');
            this.endRow(out);
            this.state = State.AfterCr;
          } else {
            this.state = State.Unquoted;
            start = i;
          }
          i++;
          break;
        case State.Unquoted:
          if (c === COMMA) {
            this.endField(text.slice(start, i));
            this.state = State.FieldStart;
          } else if (c === LF) {
            this.endField(text.slice(start, i));
            this.endRow(out);
            this.newLine();
          } else if (c === CR) {
            this.endField(text.slice(start, i));
            this.endRow(out);
            this.state = State.AfterCr;
          } else if (c === QUOTE) {
            throw this.error(this.line, 'stray quote inside an unquoted field (quote the whole field and write "" for a quote)');
          }
          i++;
          break;
        case State.Quoted:
          if (c === QUOTE) {
            this.pending += text.slice(start, i);
            this.state = State.QuoteInQuoted;
          } else if (c === LF) {
            this.line++;
          }
          i++;
          break;
        case State.QuoteInQuoted:
          if (c === QUOTE) {
            this.pending += '"';
            this.state = State.Quoted;
            start = i + 1;
          } else if (c === COMMA) {
            this.endField('');
            this.state = State.FieldStart;
          } else if (c === LF) {
            this.endField('');
            this.endRow(out);
            this.newLine();
          } else if (c === CR) {
            this.endField('');
            this.endRow(out);
            this.state = State.AfterCr;
          } else {
            throw this.error(this.line, 'unexpected text after a closing quote (write "" for a quote inside a quoted field)');
          }
          i++;
          break;
        case State.AfterCr:
          this.newLine();
          if (c === LF) i++; // CRLF is one line end; anything else is re-read as the next row's start
          break;
      }
    }
    if (this.state === State.Unquoted || this.state === State.Quoted) this.pending += text.slice(start);
  }

  /** Call at end of file; appends the last row if it had no line end. */
  finish(out: CsvRow[]): void {
    switch (this.state) {
      case State.Quoted:
        throw this.error(this.quoteLine, 'unterminated quoted field at end of file');
      case State.Unquoted:
      case State.QuoteInQuoted:
        this.endField('');
        this.endRow(out);
        break;
      case State.FieldStart:
        if (this.fields.length > 0) {
          this.fields.push(''); // "a,b," at EOF ends with an empty field
          this.endRow(out);
        }
        break;
      case State.AfterCr:
        break;
    }
    this.state = State.FieldStart;
  }

  private endField(tail: string): void {
    this.fields.push(this.pending + tail);
    this.pending = '';
  }

  private endRow(out: CsvRow[]): void {
    const fields = this.fields;
    this.fields = [];
    // A blank line is one empty, unquoted field: skip it (a quoted "" is a real row).
    if (!(fields.length === 1 && fields[0] === '' && !this.anyQuoted)) out.push({ fields, line: this.rowLine });
    this.anyQuoted = false;
  }

  private newLine(): void {
    this.line++;
    this.rowLine = this.line;
    this.state = State.FieldStart;
  }

  private error(line: number, message: string): QuantlensError {
    return new QuantlensError('DATASET', message, `${this.path}:${line}`);
  }
}

/** Every row of the file (header first), pulled one read-chunk at a time. */
export async function* readCsvRows(path: string, options: ChunkOptions = {}): AsyncGenerator<CsvRow> {
  const tokenizer = new CsvTokenizer(path);
  const rows: CsvRow[] = [];
  for await (const text of readTextChunks(path, options)) {
    tokenizer.push(text, rows);
    // Hand rows out before reading further, so at most one chunk's rows are held.
    for (let k = 0; k < rows.length; k++) yield rows[k];
    rows.length = 0;
  }
  tokenizer.finish(rows);
  yield* rows;
}

function checkHeader(path: string, header: CsvRow): string[] {
  const seen = new Set<string>();
  for (const name of header.fields) {
    if (seen.has(name)) throw new QuantlensError('DATASET', `duplicate column "${name}" in the header`, `${path}:${header.line}`);
    seen.add(name);
  }
  return header.fields;
}

/** The header's column names; reads only as far as the end of the header row. */
export async function readCsvHeader(path: string, options: ChunkOptions = {}): Promise<string[]> {
  for await (const row of readCsvRows(path, options)) return checkHeader(path, row); // return() closes the file
  throw new QuantlensError('DATASET', `${path}: empty file, a CSV dataset needs a header row`);
}

/**
 * Data rows as records; example_id is the 0-based data-row index (header and blank lines excluded).
 * A header-only file yields nothing; a 0-byte file also yields nothing (datasetColumns rejects it).
 */
export async function* readCsvRecords(path: string, options: ChunkOptions = {}): AsyncGenerator<DatasetRecord> {
  let header: string[] | undefined;
  let example_id = 0;
  for await (const row of readCsvRows(path, options)) {
    if (!header) {
      header = checkHeader(path, row);
      continue;
    }
    const values = row.fields;
    if (values.length !== header.length) {
      throw new QuantlensError('DATASET', `row has ${values.length} fields, header has ${header.length}`, `${path}:${row.line}`);
    }
    const names = header;
    yield { example_id: example_id++, fields: fieldsFromEntries(names.map((name, j) => [name, values[j]] as const)) };
  }
}
