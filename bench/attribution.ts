/**
 * LIG throughput on stories260K-onnx (fp32, CPU): examples/s per layer, and how it scales with
 * Gauss–Legendre steps (16, 50, 128) and with prompt length (BoolQ questions vs the same repeated
 * to ~2× and ~4× the tokens). Skips with a message when ../shared is absent.
 *
 *   node --import tsx bench/attribution.ts [examples=8]
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadTokenizer } from '../sources/tokenizer.ts';
import { attributeBatch, createAttributionSession } from '../operators/attribution/lig.ts';

const SHARED = path.resolve(import.meta.dirname, '..', '..', 'shared');
const dir = path.join(SHARED, 'models/stories260K-onnx');
if (!existsSync(dir)) {
  console.log(`SKIP bench/attribution: ${dir} is absent`);
  process.exit(0);
}
const N = Number(process.argv[2] ?? 8);
const QUESTIONS = [
  'do iran and afghanistan speak the same language',
  'do good samaritan laws protect those who help at an accident',
  'is windows movie maker part of windows essentials',
  'is confectionary sugar the same as powdered sugar',
  'is elder scrolls online the same as skyrim',
  'can you use oyster card at epsom station',
  'will there be a season 4 of da vinci\'s demons',
  'is the federal court the same as the supreme court',
];
const tok = await loadTokenizer(dir);
const make = (repeat: number) =>
  Array.from({ length: N }, (_, i) => {
    const q = Array.from({ length: repeat }, (_, k) => QUESTIONS[(i + k) % QUESTIONS.length]).join(' and ');
    return { ids: tok.encode(`Respond with True or False only.\n${q}\nAnswer:`) };
  });

console.log(`LIG on stories260K-onnx fp32, ${N} examples per measurement (CPU, default threads)`);
console.log('layer | steps | tokens/example | examples/s | completeness median');
for (const layer of [0, 2, 4]) {
  const t0 = Date.now();
  const s = await createAttributionSession(path.join(dir, 'model.onnx'), `/model/layers.${layer}/mlp/act_fn/Mul_output_0`);
  const buildMs = Date.now() - t0;
  await attributeBatch(s, make(1).slice(0, 1), s.tensor, { steps: 2, onWarning: () => {} }); // warm-up
  const cases: [number, number][] = layer === 2 ? [[16, 1], [50, 1], [128, 1], [50, 2], [50, 4]] : [[50, 1]];
  for (const [steps, repeat] of cases) {
    const examples = make(repeat);
    const tokens = examples.reduce((a, e) => a + e.ids.length, 0) / N;
    const start = performance.now();
    const rs = await attributeBatch(s, examples, s.tensor, { steps, onWarning: () => {} });
    const sec = (performance.now() - start) / 1000;
    const errs = rs.map((r) => r.completenessError).sort((a, b) => a - b);
    console.log(`${layer} | ${steps} | ${tokens.toFixed(0)} | ${(N / sec).toFixed(2)} | ${errs[Math.floor(N / 2)].toExponential(2)}`);
  }
  console.log(`  (layer ${layer}: attribution graph built and loaded in ${buildMs} ms; ${s.pathNodes} forward nodes on the path, ${s.backwardNodes} backward nodes)`);
  await s.session.release();
}
