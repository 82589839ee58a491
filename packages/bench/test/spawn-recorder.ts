/**
 * Records the child processes that code under test starts, while the real execFile still runs
 * them. In a test file:
 *   const { spawned, recordSpawns } = await vi.hoisted(() => import('./spawn-recorder.js'));
 *   vi.mock('node:child_process', recordSpawns);
 */
export const spawned: { file: string; args: string[] }[] = [];

export async function recordSpawns(importOriginal: () => Promise<unknown>): Promise<unknown> {
  const original = (await importOriginal()) as typeof import('node:child_process');
  const execFile = ((file: string, args: string[], ...rest: unknown[]) => {
    spawned.push({ file, args: [...args] });
    return (original.execFile as (...a: unknown[]) => unknown)(file, args, ...rest);
  }) as unknown as typeof original.execFile;
  return { ...original, execFile, default: { ...original, execFile } };
}
