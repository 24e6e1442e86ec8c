import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fdCheck, type Body } from './fd-harness.ts';

/** Register one uvu test: the op is on the path and every coordinate matches central differences. */
export function check(name: string, op: string, body: Body, opts: { positive?: boolean; domains?: Record<string, number>; kinks?: boolean; opset?: number } = {}) {
  test(`${name}: backward graph == central differences`, async () => {
    const r = await fdCheck(body, opts);
    assert.ok(r.pathOps.includes(op), `${op} is on the path (${r.pathOps})`);
    assert.ok(r.maxAbsGrad > 1e-3, `non-trivial gradient (${r.maxAbsGrad})`);
    assert.equal(r.failures.slice(0, 5), [], `${r.failures.length}/${r.coordinates} coordinates off`);
  });
}
