/**
 * No function in library, CLI or bench code is longer than 100 lines: long functions with
 * "// ---- phase" comments are where the next engineer gets lost. Tests are exempt. Functions are
 * found by parsing (swc, the same parser the layering check uses), not by a regex.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseSync } from '@swc/core';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const MAX_LINES = 100;
const root = path.resolve(import.meta.dirname, '..');
const homes = ['core', 'onnx', 'sources', 'operators', 'sinks', 'pipelines', 'bench'];
const FUNCTION_NODES = new Set(['FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression', 'ClassMethod', 'Constructor']);

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []);
}

interface Span { start: number; end: number }
type AstNode = { type?: string; span?: Span; [k: string]: unknown };

/** Functions longer than `max` lines in one file, as "file:from-to (n lines)". */
export function longFunctions(file: string, max: number): string[] {
  const src = readFileSync(file, 'utf8');
  const bytes = Buffer.from(src);
  const ast = parseSync(src, { syntax: 'typescript' }) as unknown as AstNode & { span: Span };
  // swc spans are byte offsets counted from a per-process base; lines come from newline counts.
  const lineOf = (byte: number) => { let n = 1; for (let i = 0; i < byte; i++) if (bytes[i] === 10) n++; return n; };
  const found: string[] = [];
  const walk = (n: unknown): void => {
    if (!n || typeof n !== 'object') return;
    if (Array.isArray(n)) { for (const c of n) walk(c); return; }
    const node = n as AstNode;
    if (node.type && FUNCTION_NODES.has(node.type) && node.span) {
      const a = lineOf(node.span.start - ast.span.start), b = lineOf(node.span.end - ast.span.start);
      if (b - a + 1 > max) found.push(`${path.relative(root, file)}:${a}-${b} (${b - a + 1} lines)`);
    }
    for (const [k, v] of Object.entries(node)) if (k !== 'span') walk(v);
  };
  walk(ast);
  return found;
}

test('the checker sees a long function (so the real check cannot pass vacuously)', () => {
  const self = path.join(root, 'test', 'function-length.test.ts');
  assert.ok(longFunctions(self, 5).some((l) => l.includes('function-length.test.ts')));
});

test(`no function over ${MAX_LINES} lines outside tests`, () => {
  const files = homes.flatMap((h) => tsFiles(path.join(root, h)));
  assert.ok(files.length > 100, `only ${files.length} files found`);
  const long = files.flatMap((f) => longFunctions(f, MAX_LINES));
  assert.equal(long, []);
});

test.run();
