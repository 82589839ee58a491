/**
 * The HTML memory report: one self-contained file (inline SVG, no scripts, no network) with the
 * run's verdict, the statistics, a timeline of throughput and memory, and, per pipeline thread, a
 * map of its arena at its busiest moment (`pool.snapshot()`): mapped pages, live blocks by shape,
 * free runs.
 */
import type { PoolSnapshot } from '@gpupool/core';
import type { Progress, RunSummary } from './run.js';

const esc = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );

const MB = 1024 * 1024;
const COLORS = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#b07aa1',
  '#edc948',
  '#76b7b2',
  '#ff9da7',
  '#9c755f',
  '#e15759',
];

function lineChart(points: Progress[], pick: (p: Progress) => number, label: string, color: string): string {
  const w = 560;
  const h = 140;
  const pad = 34;
  if (points.length === 0) return '';
  const xMax = Math.max(...points.map((p) => p.elapsedSeconds), 1e-6);
  const yMax = Math.max(...points.map(pick), 1e-6) * 1.1;
  const path = points
    .map(
      (p, i) =>
        `${i === 0 ? 'M' : 'L'}${(pad + (p.elapsedSeconds / xMax) * (w - pad - 8)).toFixed(1)},${(h - pad / 2 - (pick(p) / yMax) * (h - pad)).toFixed(1)}`,
    )
    .join(' ');
  return `<figure><svg width="${w}" height="${h}" role="img" aria-label="${esc(label)}">
<line x1="${pad}" y1="${h - pad / 2}" x2="${w - 8}" y2="${h - pad / 2}" stroke="#999"/>
<line x1="${pad}" y1="${pad / 2}" x2="${pad}" y2="${h - pad / 2}" stroke="#999"/>
<text x="2" y="${pad / 2 + 4}" font-size="10">${yMax.toFixed(1)}</text>
<text x="${w - 60}" y="${h - 2}" font-size="10">${xMax.toFixed(1)} s</text>
<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/></svg>
<figcaption>${esc(label)}</figcaption></figure>`;
}

function shapeLabel(b: PoolSnapshot['blocks'][number]): string {
  return b.shape === null ? `${b.bytes} B` : `${b.dtype ?? ''}[${b.shape.join('×')}]`;
}

function arenaMap(threadId: number, s: PoolSnapshot): string {
  const w = 900;
  // Draw up to the end of what is mapped or used, not the whole reserved address range.
  let end = 0;
  // Where a mapped run starts: superblock snapshots number pages from the shared arena's start,
  // whole arenas from their own start.
  const runAt = (a: PoolSnapshot['arenas'][number], first: number) =>
    a.kind === 'superblock' && first * a.pageBytes >= a.start
      ? first * a.pageBytes
      : a.start + first * a.pageBytes;
  for (const a of s.arenas) {
    for (const [first, count] of a.mappedRuns) end = Math.max(end, runAt(a, first) + count * a.pageBytes);
  }
  for (const b of s.blocks) end = Math.max(end, b.address + b.sizeBytes);
  end = Math.max(end, 1);
  const start = s.arenas.length > 0 ? Math.min(...s.arenas.map((a) => a.start)) : 0;
  const x = (address: number) => (((address - start) / (end - start)) * w).toFixed(2);
  const width = (bytes: number) => Math.max(0.5, (bytes / (end - start)) * w).toFixed(2);
  const shapes = [...new Set(s.blocks.map(shapeLabel))];
  const parts: string[] = [];
  for (const a of s.arenas) {
    for (const [first, count] of a.mappedRuns) {
      parts.push(
        `<rect x="${x(runAt(a, first))}" y="0" width="${width(count * a.pageBytes)}" height="12" fill="#cfd8dc"><title>mapped: ${((count * a.pageBytes) / MB).toFixed(1)} MB</title></rect>`,
      );
    }
  }
  for (const f of s.free) {
    if (f.address >= end) continue;
    parts.push(
      `<rect x="${x(f.address)}" y="16" width="${width(Math.min(f.bytes, end - f.address))}" height="30" fill="#eee"><title>free ${(f.bytes / MB).toFixed(2)} MB</title></rect>`,
    );
  }
  for (const b of s.blocks) {
    const color = COLORS[shapes.indexOf(shapeLabel(b)) % COLORS.length];
    parts.push(
      `<rect x="${x(b.address)}" y="16" width="${width(b.sizeBytes)}" height="30" fill="${color}" stroke="#fff" stroke-width="0.5"><title>#${b.id} ${esc(shapeLabel(b))} ${(b.bytes / MB).toFixed(2)} MB @ ${b.offset}</title></rect>`,
    );
  }
  const legend = shapes
    .map(
      (label, i) => `<span class="key" style="background:${COLORS[i % COLORS.length]}"></span>${esc(label)}`,
    )
    .join(' &nbsp; ');
  const st = s.stats;
  return `<h3>Thread ${threadId}: ${esc(s.name)} (${esc(s.policy)}, ${esc(s.backing)})</h3>
<p>At its busiest: ${s.blocks.length} live blocks, ${(st.liveBytes / MB).toFixed(2)} MB live in ${(st.reservedBytes / MB).toFixed(2)} MB held; the first ${((end - start) / MB).toFixed(1)} MB of the arena shown (grey bar: mapped pages).</p>
<svg width="${w}" height="48" role="img" aria-label="arena map">${parts.join('')}</svg>
<p class="legend">${legend}</p>`;
}

function statsTable(s: RunSummary): string {
  const rows: [string, string][] = [
    ['frames checked', String(s.framesChecked)],
    ['frames wrong', String(s.framesWrong)],
    ['objects checked', String(s.objectsChecked)],
    ['frames/s', s.framesPerSecond.toFixed(1)],
    ['allocations (device calls that obtained memory)', String(s.allocations)],
    ['reuses', String(s.reuses)],
    ['returns', String(s.returns)],
    ['leaks', String(s.leaks)],
    ['peak live MB', s.peakMB.toFixed(2)],
    ['peak reserved MB', s.peakReservedMB.toFixed(2)],
    ['fragmentation events', String(s.fragmentationEvents)],
    ['reuse rate', `${(s.reuseRate * 100).toFixed(1)} %`],
    ['device calls: obtain / give back', `${s.deviceAllocCalls} / ${s.deviceFreeCalls}`],
  ];
  return `<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

export function renderReport(summary: RunSummary, generatedAt = new Date()): string {
  const ok = summary.framesWrong === 0 && summary.leaks === 0;
  const maps = summary.snapshots.map((s) => arenaMap(s.threadId, s.snapshot)).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gpupool example: memory report</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;max-width:960px;color:#222}
table{border-collapse:collapse}th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
td{font-variant-numeric:tabular-nums}.ok{color:#2e7d32}.bad{color:#c62828}
figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:12px;color:#555}
.key{display:inline-block;width:10px;height:10px;margin-right:4px}.legend{font-size:12px}
</style></head><body>
<h1>gpupool example: memory report</h1>
<p class="${ok ? 'ok' : 'bad'}"><strong>${ok ? 'PASS' : 'FAIL'}</strong>: ${summary.framesChecked} frames checked, ${summary.framesWrong} wrong, ${summary.leaks} leaks.</p>
<p>${summary.cameras} cameras × ${summary.framesPerCamera} frames on ${esc(summary.device)} (${summary.deviceKind}, ${summary.kernels} kernels), ${summary.workers} worker threads; memory: ${esc(summary.memory)}; policy ${esc(summary.policy)}. Generated ${esc(generatedAt.toISOString())}.</p>
<h2>Statistics</h2>
${statsTable(summary)}
<h2>Timeline</h2>
${lineChart(summary.timeline, (p) => p.framesPerSecond, 'frames/s (cumulative average)', '#4e79a7')}
${lineChart(summary.timeline, (p) => p.reservedMB, 'reserved MB (device memory held)', '#e15759')}
${lineChart(summary.timeline, (p) => p.liveMB, 'live MB (tensors of the frames in flight)', '#59a14f')}
<h2>Arenas at their busiest</h2>
${maps || '<p>No pool snapshots (--no-pool: tensors are device segments).</p>'}
${summary.problems.length > 0 ? `<h2>Problems</h2><ul>${summary.problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
}
