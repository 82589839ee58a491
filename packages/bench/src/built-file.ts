/** Where the bench finds its own built entry points (child processes and workers load built JS). */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BenchDeviceError } from './errors.js';

/**
 * dist/`name`, found from dist/ (this module bundled there) or from src/ (tests run on sources);
 * throws BenchDeviceError with `hint` when it is not built.
 */
export function builtFile(name: string, hint: string): string {
  for (const candidate of [
    new URL(`./${name}`, import.meta.url),
    new URL(`../dist/${name}`, import.meta.url),
  ]) {
    const path = fileURLToPath(candidate);
    if (existsSync(path)) return path;
  }
  throw new BenchDeviceError(hint);
}
