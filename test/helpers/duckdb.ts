import { DuckDBInstance } from '@duckdb/node-api';

/** Run one SQL query in a fresh in-memory DuckDB and return rows as objects. */
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
