/**
 * CSV beside the report: one file per table, in long ("tidy") form with exact values (the same
 * round-trippable numbers as the data-value attributes), so a table can be re-read by a script
 * without parsing formatted text.
 */
export type CsvValue = string | number | boolean | null | undefined;

export interface Csv { columns: string[]; rows: CsvValue[][] }

function field(v: CsvValue): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? String(v) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** RFC 4180 text with a header line and \n line ends. */
export function csvText(csv: Csv): string {
  return [csv.columns, ...csv.rows].map((r) => r.map(field).join(',')).join('\n') + '\n';
}

/** File name of a table's CSV under tables/: "<id>.csv", or "<prefix>-run<i>-<id>.csv" for a multi-run report. */
export function csvFileName(tableId: string, runIndex: number, prefix?: string): string {
  return prefix ? `${prefix}-run${runIndex + 1}-${tableId}.csv` : `${tableId}.csv`;
}
