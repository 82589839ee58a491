/**
 * The command line: `node dist/main.js [--device host|cuda] [--no-pool] [--frames N] [--cameras K]
 * [--workers W] [--policy NAME] [--json] [--report FILE.html]`.
 *
 * Output: progress on stderr (one updating line on a TTY, a line a second otherwise), then the
 * statistics on stdout (a table, or with --json exactly one JSON object). Exit status: 0 when every
 * frame was right and nothing leaked, 1 otherwise, 2 for a usage error (a --report path that cannot
 * be written included) or CUDA being unavailable.
 */
import { accessSync, constants, existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { inspect, parseArgs } from 'node:util';
import { policyNames } from '@gpupool/core';
import { renderReport } from './report.js';
import {
  CAMERAS_MAX,
  CudaUnavailableForRunError,
  defaultWorkers,
  FRAMES_MAX,
  type Progress,
  type RunSummary,
  runPipeline,
  WORKERS_MAX,
} from './run.js';

const USAGE = `Usage: gpupool-example [options]

A video-analytics pipeline on one gpupool memory pool: synthetic 1080p cameras → upload →
preprocess (1×3×640×640 float16) → detect → crops (N×3×256×128) → embeddings, every result
checked against what the camera drew.

Options:
  --device host|cuda   host: HostDevice + JS kernels (default); cuda: CudaDevice + CUDA kernels
  --no-pool            allocate and free device memory for every tensor (for comparison)
  --frames N           frames per camera (default 60)
  --cameras K          cameras (default 2)
  --workers W          worker threads (default: one per core, at most 8; 0 = main thread)
  --policy NAME        pool placement policy (default: core's default for the device;
                       not with --no-pool)
  --json               print one JSON object with the statistics at the end
  --report FILE.html   where to write the HTML memory report (default gpupool-report.html;
                       its folder must exist)
  -h, --help           this text
`;

class UsageError extends Error {}

function integer(name: string, raw: string | undefined, fallback: number, lo: number, hi: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < lo || value > hi) {
    throw new UsageError(`--${name} must be an integer in ${lo}..${hi} (got '${raw}')`);
  }
  return value;
}

/** --report's file, checked before the run so a bad path fails in a second, not after every frame. */
function reportPath(raw: string | undefined): string {
  const path = resolve(raw ?? 'gpupool-report.html');
  const shown = raw ?? path;
  if (existsSync(path) && statSync(path).isDirectory())
    throw new UsageError(`--report ${shown} is a directory: name a file, e.g. report.html`);
  const folder = dirname(path);
  if (!existsSync(folder) || !statSync(folder).isDirectory())
    throw new UsageError(`--report ${shown}: the folder ${folder} does not exist`);
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    throw new UsageError(`--report ${shown}: the folder ${folder} is not writable`);
  }
  return path;
}

function progressPrinter(tty: boolean): { print(p: Progress): void; end(): void } {
  let lastLineAt = 0;
  let lastFramesDone = -1;
  let drawn = false;
  const line = (p: Progress) =>
    `${p.framesDone}/${p.framesTotal} frames  ${p.framesPerSecond.toFixed(1)} frames/s  live ${p.liveMB.toFixed(1)} MB  reserved ${p.reservedMB.toFixed(1)} MB  reuse ${(p.reuseRate * 100).toFixed(1)}%${p.framesWrong > 0 ? `  WRONG ${p.framesWrong}` : ''}`;
  return {
    print(p) {
      if (tty) {
        process.stderr.write(`\r\x1b[2K${line(p)}`);
        drawn = true;
      } else if (
        p.framesDone !== lastFramesDone &&
        (p.elapsedSeconds - lastLineAt >= 1 || p.framesDone === p.framesTotal)
      ) {
        lastLineAt = p.elapsedSeconds;
        lastFramesDone = p.framesDone;
        process.stderr.write(`${line(p)}\n`);
      }
    },
    end() {
      if (drawn) process.stderr.write('\n');
    },
  };
}

function table(s: RunSummary, reportFile: string): string {
  const ok = s.framesWrong === 0 && s.leaks === 0;
  const rows: [string, string][] = [
    ['device', `${s.device} (${s.kernels} kernels)`],
    ['memory', s.memory],
    [
      'frames checked',
      `${s.framesChecked} (${s.cameras} cameras × ${s.framesPerCamera}), ${s.objectsChecked} objects`,
    ],
    ['frames wrong', String(s.framesWrong)],
    [
      'frames/s',
      `${s.framesPerSecond.toFixed(1)} (${s.msPerFramePerThread.toFixed(1)} ms a frame per thread)`,
    ],
    ['allocations', String(s.allocations)],
    ['reuses', `${s.reuses} (${(s.reuseRate * 100).toFixed(1)}% of ${s.acquires} acquires)`],
    ['returns', String(s.returns)],
    ['leaks', String(s.leaks)],
    ['peak MB', `${s.peakMB.toFixed(1)} live, ${s.peakReservedMB.toFixed(1)} reserved`],
    ['fragmentation events', String(s.fragmentationEvents)],
    ['device calls', `${s.deviceAllocCalls} obtaining memory, ${s.deviceFreeCalls} giving it back`],
    ['report', reportFile],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
  const verdict = ok
    ? `OK: every frame's boxes and embeddings matched what the cameras drew; no leaks.`
    : `FAILED: ${s.framesWrong} wrong frames, ${s.leaks} leaks.`;
  const problems =
    s.problems.length > 0 ? `\nFirst problems:\n${s.problems.map((p) => `  ${p}`).join('\n')}` : '';
  return `${lines.join('\n')}\n${verdict}${problems}`;
}

export async function main(argv: string[]): Promise<number> {
  let values: ReturnType<typeof parse>['values'];
  const parse = (args: string[]) =>
    parseArgs({
      args,
      options: {
        device: { type: 'string' },
        'no-pool': { type: 'boolean' },
        frames: { type: 'string' },
        cameras: { type: 'string' },
        workers: { type: 'string' },
        policy: { type: 'string' },
        json: { type: 'boolean' },
        report: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  let options: Parameters<typeof runPipeline>[0];
  let reportFile: string;
  try {
    values = parse(argv).values;
    if (values.help === true) {
      process.stdout.write(USAGE);
      return 0;
    }
    const device = values.device ?? 'host';
    if (device !== 'host' && device !== 'cuda')
      throw new UsageError(`--device must be host or cuda (got '${device}')`);
    options = {
      device,
      pool: values['no-pool'] !== true,
      frames: integer('frames', values.frames, 60, 1, FRAMES_MAX),
      cameras: integer('cameras', values.cameras, 2, 1, CAMERAS_MAX),
      workers: integer('workers', values.workers, defaultWorkers(), 0, WORKERS_MAX),
      workerFile: new URL('./worker.js', import.meta.url),
    };
    if (values.policy !== undefined) {
      if (!options.pool) {
        throw new UsageError('--policy places blocks in the pool: it cannot be used with --no-pool');
      }
      if (!policyNames().includes(values.policy)) {
        throw new UsageError(`--policy must be one of ${policyNames().join(', ')} (got '${values.policy}')`);
      }
      options.policy = values.policy;
    }
    reportFile = reportPath(values.report);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const json = values.json === true;
  const printer = progressPrinter(process.stderr.isTTY === true);
  if (!json) {
    process.stderr.write(
      `gpupool example: ${options.cameras} cameras × ${options.frames} frames, ${options.workers} workers, device ${options.device}${options.pool ? '' : ', --no-pool'}\n`,
    );
  }
  options.onProgress = (p) => printer.print(p);
  let summary: RunSummary;
  try {
    summary = await runPipeline(options);
  } catch (error) {
    printer.end();
    if (error instanceof CudaUnavailableForRunError) {
      process.stderr.write(
        `--device cuda: ${error.message}\nRun without --device to use the HostDevice and the JavaScript kernels.\n`,
      );
      return 2;
    }
    throw error;
  }
  printer.end();
  try {
    writeFileSync(reportFile, renderReport(summary));
  } catch (error) {
    process.stderr.write(`--report ${reportFile}: cannot write it: ${(error as Error).message}\n`);
    return 2;
  }
  if (json) {
    const { timeline: _timeline, snapshots: _snapshots, ...rest } = summary;
    process.stdout.write(`${JSON.stringify({ ...rest, reportFile })}\n`);
  } else {
    process.stdout.write(`${table(summary, reportFile)}\n`);
  }
  return summary.framesWrong === 0 && summary.leaks === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // inspect: the stack, and any error attached to it ([cause], AggregateError's [errors]).
    process.stderr.write(`gpupool example crashed: ${inspect(error)}\n`);
    process.exitCode = 1;
  },
);
