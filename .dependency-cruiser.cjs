/**
 * Layering of quantlens, checked by `npm test` (test/layering.test.ts).
 * Each home may import only from homes to its left:
 *   core ← onnx ← sources ← operators ← sinks ← pipelines
 * index.ts (the library's face), bench/ and test/ may import anything. No import cycles anywhere.
 */
const order = ['core', 'onnx', 'sources', 'operators', 'sinks', 'pipelines'];
// For each home, the homes above it (which it must not import).
const layerRules = order.slice(0, -1).map((home, i) => ({
  name: `${home}-imports-upward`,
  comment: `${home}/ may import only from ${order.slice(0, i + 1).join(', ')}`,
  severity: 'error',
  from: { path: `^${home}/` },
  to: { path: `^(${order.slice(i + 1).join('|')})/` },
}));

module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', from: {}, to: { circular: true } },
    ...layerRules,
    {
      name: 'library-code-imports-tests-or-bench',
      severity: 'error',
      from: { path: `^(${order.join('|')})/` },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|runs|dist)/' },
    tsPreCompilationDeps: true,
  },
};
