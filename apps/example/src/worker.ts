/**
 * The Piscina worker: one frame per task (see thread.ts). Built as its own entry (dist/worker.js),
 * since Node 20 worker threads cannot load TypeScript.
 */
import { type FrameTask, runTask, type TaskOutput } from './thread.js';

export default function task(input: FrameTask): Promise<TaskOutput> {
  return runTask(input);
}
