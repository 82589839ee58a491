/** Cleaning up on the way out of a failure without hiding the failure. */

/**
 * Runs `cleanup` on the way out of a failure and rethrows `error`, the failure itself: a cleanup that
 * throws too must not hide it. What the caller gets is what it would have got without the cleanup
 * error: the same error object (its class, `code`, message and stack are what callers match on), with
 * the cleanup error attached as its `cause`, which Node's `util.inspect` (and this app's crash
 * message) prints as `[cause]`. Where `cause` cannot be set without losing something (the error
 * already has a cause, is not an extensible Error, or is not an Error at all), an AggregateError of
 * [error, cleanup error] is thrown instead, its `cause` the original error.
 */
export function rethrowAfterCleanup(error: unknown, cleanup: () => void): never {
  try {
    cleanup();
  } catch (cleanupError) {
    throw withCleanupError(error, cleanupError);
  }
  throw error;
}

/** `error` carrying `cleanupError` as described at rethrowAfterCleanup. */
export function withCleanupError(error: unknown, cleanupError: unknown): unknown {
  if (error instanceof Error && !Object.hasOwn(error, 'cause') && Object.isExtensible(error)) {
    error.cause = cleanupError;
    return error;
  }
  const message = error instanceof Error ? error.message : String(error);
  return new AggregateError([error, cleanupError], `${message} (and cleaning up after it failed too)`, {
    cause: error,
  });
}
