#!/usr/bin/env node
/** gpupool-bench: the executable. All logic lives in cli-main.ts (runCli), which tests call directly. */
import { runCli } from './cli-main.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`gpupool-bench: ${String(error)}\n`);
    process.exitCode = 1;
  },
);
