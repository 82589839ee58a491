/**
 * The HTML report: one self-contained file (works offline). chart.js's UMD build is inlined from
 * node_modules, the results are embedded as JSON, and `renderReport` (report/client.ts) draws the
 * charts and memory maps when the page loads. Also prints the summary tables as HTML <pre>.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { summaryTables } from '../format/summary.js';
import type { ResultsBundle } from '../results.js';
import { renderReport } from './client.js';

let chartSource: string | undefined;

/** chart.js's UMD build (its package exports map hides it, so find it next to the main entry). */
export function chartJsUmdSource(): string {
  if (chartSource === undefined) {
    const main = createRequire(import.meta.url).resolve('chart.js');
    chartSource = readFileSync(join(dirname(main), 'chart.umd.min.js'), 'utf8');
  }
  return chartSource;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** JSON that is safe inside a <script> element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

export function renderReportHtml(bundle: ResultsBundle, title = 'gpupool benchmarks'): string {
  const m = bundle.machine;
  const machine = m
    ? `${m.gpu ? `${m.gpu} · ` : ''}${m.cpuModel} (${m.cpuCores} cores) · Node ${m.node}${m.nodeFlags?.length ? ` ${m.nodeFlags.join(' ')}` : ''} · ${m.date}${m.commit ? ` · commit ${m.commit}` : ''}`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1140px;color:#111827}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}h3{font-size:13px;font-weight:600;margin:14px 0 4px}
.note{color:#4b5563;margin:4px 0 8px}.chart{position:relative;width:100%}
pre{background:#f3f4f6;padding:12px;overflow-x:auto;font-size:12px}canvas[data-kind=memory-map]{width:100%;border:1px solid #d1d5db}
</style></head><body>
<h1>${escapeHtml(title)}</h1><p class="note">${escapeHtml(machine)}</p>
<div id="charts"></div>
<h2>Tables</h2><pre>${escapeHtml(summaryTables(bundle))}</pre>
<script>${chartJsUmdSource()}</script>
<script id="gpupool-data" type="application/json">${scriptJson(bundle)}</script>
<script>
(${renderReport.toString()})(JSON.parse(document.getElementById('gpupool-data').textContent), window.Chart);
</script>
</body></html>
`;
}

export function writeReport(path: string, bundle: ResultsBundle, title?: string): void {
  writeFileSync(path, renderReportHtml(bundle, title));
}
