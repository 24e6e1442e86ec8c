/**
 * Dataset values reach prompts as text. JSONL and Parquet hold typed values, so they are turned
 * into the string a person would expect: null/undefined → '', primitives via String(),
 * objects/arrays as JSON (String() would give "[object Object]"), dates as ISO-8601.
 */
export function fieldText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value !== 'object') return String(value);
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

/** Builds a fields object safely: own data properties even for a column named "__proto__". */
export function fieldsFromEntries(entries: Iterable<readonly [string, string]>): Record<string, string> {
  return Object.fromEntries(entries);
}
