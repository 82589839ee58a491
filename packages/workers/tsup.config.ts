import { defineConfig } from 'tsup';

// Two entries: the package root and the `./thread` subpath that task code imports inside workers.
// Both share one per-thread registry on globalThis, so separate bundles still agree.
export default defineConfig({
  entry: { index: 'src/index.ts', thread: 'src/thread.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  shims: true,
  target: 'node20',
});
