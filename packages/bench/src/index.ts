/**
 * @gpupool/bench: the public surface. The command functions run programmatically exactly what the
 * `gpupool-bench` CLI runs; the records they return are the CLI's `--json` output.
 */

export type { OptionKind, ParsedArgs } from './args.js';
export { parseArgs } from './args.js';
export type { BisectResult } from './bisect.js';
export { bisectSmallest } from './bisect.js';
export { benchCliFile, deviceArgs, runCliChild } from './cli-child.js';
export type { CliIo } from './cli-main.js';
export { runCli, USAGE } from './cli-main.js';
export type { CapacityBenchOptions } from './commands/capacity.js';
export {
  CAPACITY_TARGET_RATIO,
  CAPACITY_TOLERANCE_RATIO,
  capacityOf,
  completesOn,
  runCapacity,
} from './commands/capacity.js';
export type { LatencyBenchOptions } from './commands/latency.js';
export {
  LATENCY_RUN_TARGET_MS_DEFAULT,
  LATENCY_SIZES_BYTES,
  latencyChildArgs,
  runLatency,
  timePairs,
} from './commands/latency.js';
export { addToBundle, isReplayRecord, mergeFiles, parseJsonValues } from './commands/merge.js';
export type { ReplayBenchOptions } from './commands/replay.js';
export {
  detailPass,
  memoryMapOf,
  REPLAY_RUNS_DEFAULT,
  REPLAY_WARMUP_DEFAULT,
  replayOne,
  resolvePolicies,
  runReplay,
} from './commands/replay.js';
export type { ScalingBenchOptions } from './commands/scaling.js';
export {
  onCpuNsPerPair,
  roundThroughput,
  runScaling,
  SCALING_PAIRS_PER_THREAD_DEFAULT,
  SCALING_WARMUP_MS_DEFAULT,
  scalingWorkerFile,
} from './commands/scaling.js';
export type { CudaMode, DeviceKind, DeviceSpec } from './devices.js';
export { CUDA_MODES, createDevice, DEVICE_KINDS, deviceLabel } from './devices.js';
export type { BenchErrorCode } from './errors.js';
export {
  BenchDeviceError,
  BenchError,
  BenchInputError,
  BenchOutputError,
  BenchUsageError,
} from './errors.js';
export { capacityTable, latencyTable, replayTable, scalingTable, summaryTables } from './format/summary.js';
export { formatBytes, formatNs, formatRatio, formatTable } from './format/table.js';
export type { MachineInfo } from './machine.js';
export { machineInfo, v8TimingFlags } from './machine.js';
export type { Progress, ProgressOptions } from './progress.js';
export { createProgress } from './progress.js';
export { renderReportHtml, writeReport } from './report/html.js';
export type {
  CapacityRecord,
  LatencyRecord,
  LatencyRow,
  MemoryMap,
  RawLatencyRow,
  ReplayRecord,
  ResultsBundle,
  ScalingRecord,
  ScalingRow,
  Timeline,
} from './results.js';
export { emptyBundle } from './results.js';
export { geometricMean, median } from './stats.js';
export { defaultTraceFiles, loadTrace, peakLiveIndex, traceDirCandidates } from './traces.js';
