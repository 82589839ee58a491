#!/usr/bin/env node
// Builds the CUDA addon (build/Release/gpupool_native.node) with cmake-js, offline.
// Part of the package's `build` script (a turbo task), never an install script. Where nvcc or
// cmake is missing, or GPUPOOL_SKIP_NATIVE=1, it skips the addon with a clear reason and exits 0:
// the package then loads with `cuda.available === false` and says "built without CUDA".
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const skipFile = join(root, 'build', 'SKIPPED.txt');

function onPath(tool) {
  return spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
}

function findNvcc() {
  if (process.env.CUDACXX && existsSync(process.env.CUDACXX)) return process.env.CUDACXX;
  if (onPath('nvcc')) return 'nvcc';
  const home = process.env.CUDA_HOME ?? process.env.CUDA_PATH ?? '/usr/local/cuda';
  const candidate = join(home, 'bin', 'nvcc');
  return existsSync(candidate) ? candidate : undefined;
}

function skip(reason) {
  mkdirSync(join(root, 'build'), { recursive: true });
  rmSync(join(root, 'build', 'Release', 'gpupool_native.node'), { force: true });
  writeFileSync(skipFile, `${reason}\n`);
  console.warn(`@gpupool/native: skipping the CUDA addon: ${reason}`);
  console.warn('@gpupool/native: the package still works and reports cuda.available === false.');
  process.exit(0);
}

if (process.env.GPUPOOL_SKIP_NATIVE === '1') skip('GPUPOOL_SKIP_NATIVE=1');
if (!onPath('cmake')) skip('cmake was not found on PATH (install CMake ≥ 3.18)');
const nvcc = findNvcc();
if (nvcc === undefined) skip('nvcc was not found (install the CUDA toolkit or set CUDACXX / CUDA_HOME)');

const require = createRequire(import.meta.url);
const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const args = [
  cmakeJs,
  'compile',
  '--out',
  'build',
  `--CDCMAKE_CUDA_COMPILER=${nvcc === 'nvcc' ? 'nvcc' : nvcc}`,
];
if (process.env.GPUPOOL_CUDA_ARCHITECTURES)
  args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.GPUPOOL_CUDA_ARCHITECTURES}`);
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error('@gpupool/native: the CUDA addon failed to build (see the compiler output above).');
  process.exit(result.status ?? 1);
}
rmSync(skipFile, { force: true });
console.log('@gpupool/native: built build/Release/gpupool_native.node');
