/** DuckDB in tests: every output file must be readable by it, so tests query outputs through it. */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

/** Run one SQL query in a fresh in-memory DuckDB and return rows as objects (DuckDB value types). */
export async function duckdbQuery(sql: string): Promise<Record<string, unknown>[]> {
  const inst = await DuckDBInstance.create(':memory:');
  const conn = await inst.connect();
  try {
    const reader = await conn.runAndReadAll(sql);
    return reader.getRowObjects() as Record<string, unknown>[];
  } finally {
    conn.closeSync?.();
  }
}

export interface DuckdbSession {
  /** Rows as plain JS objects (bigint, numbers, strings, arrays). */
  sql(q: string): Promise<Record<string, unknown>[]>;
  close(): void;
}

/** One in-memory connection for many queries (a test file's `before`/`after`). */
export async function openDuckdb(): Promise<DuckdbSession> {
  const con: DuckDBConnection = await (await DuckDBInstance.create(':memory:')).connect();
  return {
    sql: async (q) => (await con.runAndReadAll(q)).getRowObjectsJS() as Record<string, unknown>[],
    close: () => con.closeSync(),
  };
}
