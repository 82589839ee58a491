/** Shared by the tests that call the addon directly: its own argument checks throw kind 'argument'. */
import { expect } from 'vitest';

/** Expects `fn` to throw the addon's argument error, with a message matching `message`. */
export function expectAddonRefusal(fn: () => unknown, message: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toMatchObject({ kind: 'argument' });
  expect((thrown as Error).message).toMatch(message);
}
