/**
 * GrowableArray keeps every appended value in order across growths (checked against a plain
 * array), for each element type it serves, and view() covers exactly the filled part.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GrowableArray } from '../../core/growable-array.ts';
import { SeededRandom } from '../../core/random.ts';

const TYPES = [Float64Array, Float32Array, Int32Array, Uint8Array] as const;

test('push and pushAll across many growths equal a plain array, for every element type', () => {
  for (const C of TYPES) {
    const rnd = new SeededRandom(3);
    const g = new GrowableArray<InstanceType<typeof C>>(C as never, 1);
    const want: number[] = [];
    for (let i = 0; i < 300; i++) {
      if (rnd.uniform() < 0.5) {
        const v = Math.floor(rnd.uniform() * 200);
        g.push(v);
        want.push(v);
      } else {
        const a = Array.from({ length: Math.floor(rnd.uniform() * 40) }, () => Math.floor(rnd.uniform() * 200));
        g.pushAll(a);
        want.push(...a);
      }
    }
    assert.is(g.length, want.length, C.name);
    assert.equal(Array.from(g.view()), Array.from(C.from(want)), C.name);
  }
});

test('view() is the filled part only, also before the first push', () => {
  const g = new GrowableArray(Int32Array, 16);
  assert.is(g.view().length, 0);
  g.pushAll([1, 2, 3]);
  assert.equal(Array.from(g.view()), [1, 2, 3]);
});

test.run();
