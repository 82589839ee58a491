import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCapacity } from '../src/commands/capacity.js';
import { runLatency } from '../src/commands/latency.js';
import { runReplay } from '../src/commands/replay.js';
import { renderReportHtml, writeReport } from '../src/report/html.js';
import { emptyBundle, type ReplayRecord, type ResultsBundle } from '../src/results.js';
import { CHROMIUM_PATH, renderInChromium } from './chromium.js';
import { syntheticTrace } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'gpupool-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function fullBundle(): Promise<ResultsBundle> {
  const traces = [syntheticTrace('alpha', 300, 1), syntheticTrace('beta', 300, 2)];
  const bundle = emptyBundle();
  bundle.replays.push(...(await runReplay({ traces, runs: 1, detail: true })));
  const peer: ReplayRecord = {
    trace: 'alpha',
    policy: 'pytorch-default',
    device: 'simulated',
    ops: traces[0]!.length,
    peakLiveBytes: traces[0]!.peakLiveBytes,
    peakReservedBytes: traces[0]!.peakLiveBytes * 1.5,
    ratio: 1.5,
    nsPerOp: 1500,
    deviceCalls: null,
    source: 'peer',
  };
  bundle.replays.push(peer);
  bundle.latency.push(await runLatency({ runs: 1, runTargetMs: 1, sizesBytes: [512, 65536], processes: 1 }));
  bundle.scaling.push({
    kind: 'scaling',
    device: 'host',
    runs: 1,
    pairsPerThread: 10,
    rows: [1, 2, 4].flatMap((threads) =>
      ['slices', 'locked'].map((mode) => ({ mode, threads, pairsPerSecond: threads * 1e6, efficiency: 1 })),
    ),
  });
  bundle.capacity.push(...runCapacity({ traces: [traces[0]!], policies: ['tlsf'] }));
  return bundle;
}

describe('HTML report', () => {
  it('is self-contained: chart.js inlined, data embedded, no external URL', async () => {
    const html = renderReportHtml(emptyBundle());
    expect(html).toContain('Chart.js');
    expect(html).not.toMatch(/<script[^>]+src=/);
    expect(html).not.toMatch(/<link[^>]+href=/);
  });

  it.skipIf(!existsSync(CHROMIUM_PATH))(
    'renders every chart and memory map in headless Chromium',
    async () => {
      const bundle = await fullBundle();
      const path = join(dir, 'report.html');
      writeReport(path, bundle);
      const shot = process.env.GPUPOOL_REPORT_SCREENSHOT;
      const rendered = await renderInChromium(path, shot);
      expect(rendered.errors).toEqual([]);
      // ratio + speed + one timeline per trace + latency + scaling + capacity.
      expect(rendered.charts).toBe(2 + 2 + 1 + 1 + 1);
      expect(rendered.chartInstances).toBe(rendered.charts);
      // One memory map per (trace, policy) replayed with detail.
      const mapped = bundle.replays.filter((r) => r.memoryMap !== undefined).length;
      expect(rendered.memoryMaps).toBe(mapped);
      const charts = rendered.canvases.filter((c) => c.kind === 'chart');
      const maps = rendered.canvases.filter((c) => c.kind === 'memory-map');
      expect(charts).toHaveLength(rendered.charts);
      expect(maps).toHaveLength(mapped);
      for (const c of rendered.canvases) expect(c.inkedPixels, c.kind).toBeGreaterThan(500);
    },
  );
});
