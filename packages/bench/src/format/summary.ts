/**
 * The readable tables printed without `--json`: replays (trace × policy/peer, "ratio · ns/op"),
 * with the best peer and the geometric mean of ratios; latency by size; scaling by threads;
 * capacity. Each takes plain records, so merged files print the same way as fresh runs.
 */
import type {
  CapacityRecord,
  LatencyRecord,
  ReplayRecord,
  ResultsBundle,
  ScalingRecord,
} from '../results.js';
import { geometricMean } from '../stats.js';
import { formatBytes, formatNs, formatRatio, formatTable } from './table.js';

/** Column label of a record: its policy, with the device when several devices are mixed. */
function columnOf(r: ReplayRecord, mixedDevices: boolean): string {
  return mixedDevices ? `${r.policy}@${r.device}` : r.policy;
}

function finite(x: number | null | undefined): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

export function replayTable(records: readonly ReplayRecord[]): string {
  if (records.length === 0) return '';
  const devices = new Set(records.map((r) => r.device));
  const mixed = devices.size > 1;
  const traces = [...new Set(records.map((r) => r.trace))];
  const ours = [...new Set(records.filter((r) => r.source !== 'peer').map((r) => columnOf(r, mixed)))];
  const peers = [...new Set(records.filter((r) => r.source === 'peer').map((r) => columnOf(r, mixed)))];
  const columns = [...ours, ...peers];
  const cell = new Map(records.map((r) => [`${r.trace}\u0000${columnOf(r, mixed)}`, r]));
  const rows: string[][] = traces.map((t) => {
    const row = [t];
    for (const c of columns) {
      const r = cell.get(`${t}\u0000${c}`);
      row.push(
        r === undefined
          ? ''
          : r.error !== undefined
            ? 'error'
            : `${formatRatio(r.ratio)} · ${formatNs(r.nsPerOp)}`,
      );
    }
    if (peers.length > 0) {
      const best = records
        .filter((r) => r.trace === t && r.source === 'peer' && finite(r.ratio))
        .sort((a, b) => a.ratio - b.ratio)[0];
      row.push(best === undefined ? '-' : `${formatRatio(best.ratio)} (${best.policy})`);
    }
    return row;
  });
  const geo = ['geomean ratio'];
  for (const c of columns) {
    const ratios = traces.map((t) => cell.get(`${t}\u0000${c}`)?.ratio);
    geo.push(ratios.every(finite) ? formatRatio(geometricMean(ratios as number[])) : '-');
  }
  if (peers.length > 0) geo.push('');
  rows.push(geo);
  const headers = ['trace', ...columns, ...(peers.length > 0 ? ['best peer ratio'] : [])];
  // A cell says only "error"; the reasons follow the table.
  const failed = records.filter((r) => r.error !== undefined);
  const reasons =
    failed.length > 0
      ? `\nfailed:\n${failed.map((r) => `  ${r.trace}/${columnOf(r, mixed)}: ${r.error}`).join('\n')}`
      : '';
  return `replay: peak reserved / peak live · ns per op (median)\n${formatTable(headers, rows)}${reasons}`;
}

export function latencyTable(record: LatencyRecord): string {
  const policies = [...new Set(record.pool.map((r) => r.policy))];
  const sizes = [...new Set([...record.pool.map((r) => r.bytes), ...record.raw.map((r) => r.bytes)])].sort(
    (a, b) => a - b,
  );
  const apis = [...new Set(record.raw.map((r) => r.api))];
  const rows = sizes.map((bytes) => [
    formatBytes(bytes),
    ...policies.map((p) => formatNs(record.pool.find((r) => r.policy === p && r.bytes === bytes)?.nsPerPair)),
    ...apis.map((a) => formatNs(record.raw.find((r) => r.api === a && r.bytes === bytes)?.nsPerPair)),
  ]);
  return `latency on ${record.device}: one acquire+release pair, warm pool (median of ${record.runs} runs${isolationNote(record)})\n${formatTable(['size', ...policies, ...apis], rows)}`;
}

function isolationNote(record: LatencyRecord): string {
  if (record.isolation === 'process-per-policy')
    return record.processes !== undefined && record.processes > 1
      ? `; each policy in ${record.processes} fresh processes, median of their medians`
      : '; each policy in its own process';
  if (record.isolation === 'in-process') return '; all policies in one process';
  return '';
}

export function scalingTable(record: ScalingRecord): string {
  const modes = [...new Set(record.rows.map((r) => r.mode))];
  const threads = [...new Set(record.rows.map((r) => r.threads))].sort((a, b) => a - b);
  // On-CPU ns per pair, where the record has it (Linux): flat across thread counts = no contention.
  const cpu = record.rows.some((r) => r.cpuNsPerPair !== undefined);
  const rows = threads.map((t) => [
    String(t),
    ...modes.flatMap((m) => {
      const r = record.rows.find((x) => x.mode === m && x.threads === t);
      const cells =
        r === undefined
          ? ['-', '-']
          : [`${(r.pairsPerSecond / 1e6).toFixed(2)} M/s`, r.efficiency.toFixed(2)];
      if (cpu) cells.push(r?.cpuNsPerPair === undefined ? '-' : formatNs(r.cpuNsPerPair));
      return cells;
    }),
  ]);
  const headers = [
    'threads',
    ...modes.flatMap((m) => [`${m} pairs/s`, `${m} efficiency`, ...(cpu ? [`${m} on-CPU per pair`] : [])]),
  ];
  return `scaling on ${record.device}: acquire+release pairs per second, all threads (median of ${record.runs} runs)\n${formatTable(headers, rows)}`;
}

export function capacityTable(records: readonly CapacityRecord[]): string {
  if (records.length === 0) return '';
  const rows = records.map((r) => [
    r.trace,
    r.policy,
    formatBytes(r.peakLiveBytes),
    Number.isFinite(r.minCapacityRatio) ? `${r.minCapacityRatio.toFixed(3)}` : 'none',
    r.completesAtTargetRatio ? 'yes' : 'NO',
  ]);
  const target = records[0]!.targetRatio;
  return `capacity: smallest SimulatedDevice (× peak live) that completes the replay (±${records[0]!.toleranceRatio})\n${formatTable(['trace', 'policy', 'peak live', 'min capacity ×', `completes at ${target}×`], rows)}`;
}

/** Every table of a bundle, separated by blank lines. */
export function summaryTables(bundle: ResultsBundle): string {
  const parts = [replayTable(bundle.replays)];
  for (const l of bundle.latency) parts.push(latencyTable(l));
  for (const s of bundle.scaling) parts.push(scalingTable(s));
  parts.push(capacityTable(bundle.capacity));
  return parts.filter((p) => p !== '').join('\n\n');
}
