/** Test-only: prompts from the shared CSV datasets, read with a minimal RFC-4180 parser. */
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** Rows of a CSV text: quoted fields may contain commas, doubled quotes and newlines. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length) rows.push([...row, field]);
  return rows;
}

/** The first `n` values of the `prompt` column of a shared dataset CSV. */
export function datasetPrompts(sharedDir: string, name: string, n: number): string[] {
  const rows = parseCsv(readFileSync(path.join(sharedDir, 'datasets', `${name}.csv`), 'utf8'));
  const col = rows[0].indexOf('prompt');
  return rows.slice(1, n + 1).map((r) => r[col]);
}
