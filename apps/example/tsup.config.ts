import { defineConfig } from 'tsup';

// Two entries: the CLI and the Piscina worker (Node 20 worker threads cannot load .ts files).
// The workspace packages stay external: they are resolved from node_modules at run time.
export default defineConfig({
  entry: { main: 'src/main.ts', worker: 'src/worker.ts' },
  format: ['esm'],
  dts: false,
  sourcemap: true,
  clean: true,
  target: 'node20',
});
