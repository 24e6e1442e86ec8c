/**
 * The one shape of a user-facing error: a QuantlensError with the expected code and a one-line
 * message matching `message` (a string must be equal, a RegExp must match). Returns the error.
 */
import * as assert from 'uvu/assert';
import { QuantlensError } from '../../core/errors.ts';

export interface ExpectedError {
  code?: string;
  message?: string | RegExp;
}

function check(e: unknown, want: ExpectedError): QuantlensError {
  assert.instance(e, QuantlensError, `expected a QuantlensError, got ${String(e)}`);
  const err = e as QuantlensError;
  if (want.code !== undefined) assert.is(err.code, want.code);
  assert.not.match(err.message, /\n/, 'one line');
  if (typeof want.message === 'string') assert.is(err.message, want.message);
  else if (want.message) assert.match(err.message, want.message);
  return err;
}

/** `fn()` throws the expected error. */
export function expectThrows(fn: () => unknown, want: ExpectedError = {}): QuantlensError {
  try {
    fn();
  } catch (e) {
    return check(e, want);
  }
  assert.unreachable(`expected an error ${want.message ?? want.code ?? ''}`);
  throw new Error('unreachable');
}

/** `p` rejects with the expected error. */
export async function expectRejects(p: Promise<unknown>, want: ExpectedError = {}): Promise<QuantlensError> {
  try {
    await p;
  } catch (e) {
    return check(e, want);
  }
  assert.unreachable(`expected a rejection ${want.message ?? want.code ?? ''}`);
  throw new Error('unreachable');
}

/** An error caught elsewhere has the expected shape. */
export function expectError(e: unknown, want: ExpectedError = {}): QuantlensError {
  return check(e, want);
}
