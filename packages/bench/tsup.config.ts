import { defineConfig } from 'tsup';

export default defineConfig({
  // scaling-worker is the Piscina task file (workers load built JS only).
  // cli.ts keeps its shebang and becomes dist/cli.js (the `gpupool-bench` bin).
  entry: { index: 'src/index.ts', cli: 'src/cli.ts', 'scaling-worker': 'src/scaling-worker.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: { index: 'src/index.ts' } },
  sourcemap: true,
  clean: true,
  shims: true,
  target: 'node20',
});
