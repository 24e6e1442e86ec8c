import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { demoPromptStream, demoPrompts, demoPromptsJsonl } from '../../../sources/demo/demo-prompts.ts';

/** Recompute the answer from the question text itself. */
function judge(prompt: string): 'True' | 'False' | null {
  let m = /^is (\d+) plus (\d+) equal to (\d+)$/.exec(prompt);
  if (m) return +m[1] + +m[2] === +m[3] ? 'True' : 'False';
  m = /^is (\d+) bigger than (\d+)$/.exec(prompt);
  if (m) return +m[1] > +m[2] ? 'True' : 'False';
  m = /^is (\d+) an (even|odd) number$/.exec(prompt);
  if (m) return (+m[1] % 2 === 0) === (m[2] === 'even') ? 'True' : 'False';
  return null;
}

test('≥ 64 distinct prompts, both labels well represented, computable golds are right', async () => {
  const ps = demoPrompts();
  assert.ok(ps.length >= 64);
  assert.is(new Set(ps.map((p) => p.prompt)).size, ps.length);
  const trues = ps.filter((p) => p.gold === 'True').length;
  assert.ok(trues >= 20 && ps.length - trues >= 20, `${trues} True of ${ps.length}`);
  let judged = 0;
  for (const p of ps) {
    const g = judge(p.prompt);
    if (g === null) continue;
    judged++;
    assert.is(p.gold, g, p.prompt);
  }
  assert.ok(judged >= 54);
  const streamed = [];
  for await (const p of demoPromptStream()) streamed.push(p);
  assert.equal(streamed, ps);
  assert.equal(demoPromptsJsonl().trim().split('\n').map((l) => JSON.parse(l)), ps);
});

test.run();
