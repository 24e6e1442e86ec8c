/**
 * Prompt templates: `{column}` is replaced by that dataset column's text; `{{` and `}}` are
 * literal braces. The template is parsed once into literal and column parts; rendering only
 * concatenates strings, so a template can never run code.
 */
import { QuantlensError } from '../core/errors.ts';

export interface PromptTemplate {
  readonly source: string;
  /** Distinct column names used, in order of first use. */
  readonly columns: string[];
  render(fields: Record<string, string>): string;
}

type Part = { literal: string } | { column: string };

/** Parses `template`; a lone `{` or `}` or an empty `{}` is a CONFIG error at `where`. */
export function compilePrompt(template: string, where?: string): PromptTemplate {
  const parts: Part[] = [];
  let literal = '';
  let i = 0;
  while (i < template.length) {
    const c = template[i];
    if (c === '{' && template[i + 1] === '{') {
      literal += '{';
      i += 2;
    } else if (c === '}' && template[i + 1] === '}') {
      literal += '}';
      i += 2;
    } else if (c === '}') {
      throw new QuantlensError('CONFIG', `prompt template has a lone "}" at character ${i + 1} (write "}}" for a literal brace)`, where);
    } else if (c === '{') {
      const close = template.indexOf('}', i + 1);
      const open = template.indexOf('{', i + 1);
      if (close === -1 || (open !== -1 && open < close)) {
        throw new QuantlensError('CONFIG', `prompt template has a lone "{" at character ${i + 1} (write "{{" for a literal brace)`, where);
      }
      const column = template.slice(i + 1, close);
      if (column.trim() === '') {
        throw new QuantlensError('CONFIG', `prompt template has an empty placeholder "{${column}}" at character ${i + 1}; name a column, e.g. {prompt}`, where);
      }
      if (literal) parts.push({ literal });
      literal = '';
      parts.push({ column });
      i = close + 1;
    } else {
      literal += c;
      i++;
    }
  }
  if (literal) parts.push({ literal });

  const columns = [...new Set(parts.flatMap((p) => ('column' in p ? [p.column] : [])))];
  return {
    source: template,
    columns,
    render(fields: Record<string, string>): string {
      let out = '';
      for (const part of parts) {
        if ('literal' in part) {
          out += part.literal;
        } else {
          const value = Object.hasOwn(fields, part.column) ? fields[part.column] : undefined;
          if (value === undefined) {
            throw new QuantlensError('DATASET', `record has no column "${part.column}" used by the prompt template`, where);
          }
          out += value;
        }
      }
      return out;
    },
  };
}

/** Every `{column}` of the template must be a dataset column; else a CONFIG error at `where`. */
export function checkPromptColumns(t: PromptTemplate, columns: string[], where?: string): void {
  const known = new Set(columns);
  const unknown = t.columns.filter((c) => !known.has(c));
  if (unknown.length > 0) {
    const used = unknown.map((c) => `{${c}}`).join(', ');
    throw new QuantlensError('CONFIG', `prompt uses ${used} but the dataset has columns ${columns.join(', ')}`, where);
  }
}
