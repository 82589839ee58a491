/// <reference lib="dom" />
/**
 * The report's in-page script. It runs in the browser, not in Node: `renderReport` is embedded in
 * the HTML by its source text (`renderReport.toString()`), so it must stay self-contained — no
 * imports, no references outside its own body. It draws every chart with chart.js (inlined in
 * the page) and the memory maps with plain canvas calls, then sets `window.__gpupoolReport`
 * (chart count, memory-map count, errors) for tests to read.
 */
import type { ResultsBundle } from '../results.js';

export function renderReport(data: ResultsBundle, Chart: any): void {
  const w = window as any;
  const state = { charts: 0, memoryMaps: 0, errors: [] as string[] };
  w.__gpupoolReport = state;
  const palette = [
    '#2563eb',
    '#dc2626',
    '#16a34a',
    '#9333ea',
    '#ea580c',
    '#0891b2',
    '#ca8a04',
    '#db2777',
    '#4b5563',
    '#65a30d',
  ];
  const color = (i: number): string => palette[i % palette.length]!;
  const root = document.getElementById('charts')!;
  const gib = (b: number): number => b / 2 ** 30;
  const bytesLabel = (b: number): string => {
    const u = ['B', 'KiB', 'MiB', 'GiB'];
    let v = b;
    let i = 0;
    while (v >= 1024 && i < u.length - 1) {
      v /= 1024;
      i++;
    }
    return `${Number.isInteger(v) ? v : v.toFixed(1)} ${u[i]}`;
  };
  const section = (title: string, note?: string): HTMLElement => {
    const s = document.createElement('section');
    const h = document.createElement('h2');
    h.textContent = title;
    s.appendChild(h);
    if (note) {
      const p = document.createElement('p');
      p.className = 'note';
      p.textContent = note;
      s.appendChild(p);
    }
    root.appendChild(s);
    return s;
  };
  const chart = (parent: HTMLElement, config: any, heightPx = 320): void => {
    const box = document.createElement('div');
    box.className = 'chart';
    box.style.height = `${heightPx}px`;
    const canvas = document.createElement('canvas');
    canvas.dataset.kind = 'chart';
    box.appendChild(canvas);
    parent.appendChild(box);
    try {
      config.options = {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        ...(config.options || {}),
      };
      new Chart(canvas, config);
      state.charts++;
    } catch (error) {
      state.errors.push(String(error));
    }
  };
  const label = (r: { policy: string; device: string }, mixed: boolean): string =>
    mixed ? `${r.policy}@${r.device}` : r.policy;

  // Replays: ratio and speed per trace, every policy and peer side by side.
  const replays = (data.replays || []).filter((r) => r.ratio !== null && Number.isFinite(r.ratio));
  if (replays.length > 0) {
    const mixed = new Set(replays.map((r) => r.device)).size > 1;
    const traces = [...new Set(replays.map((r) => r.trace))];
    const columns = [...new Set(replays.map((r) => label(r, mixed)))];
    const find = (t: string, c: string) => replays.find((r) => r.trace === t && label(r, mixed) === c);
    const s = section(
      'Fragmentation: peak reserved / peak live',
      'Lower is better; 1.0 is the floor. Peers are marked (peer).',
    );
    const datasets = (field: 'ratio' | 'nsPerOp') =>
      columns.map((c, i) => {
        const peer = replays.some((r) => label(r, mixed) === c && r.source === 'peer');
        return {
          label: peer ? `${c} (peer)` : c,
          data: traces.map((t) => find(t, c)?.[field] ?? null),
          backgroundColor: color(i),
        };
      });
    chart(s, {
      type: 'bar',
      data: { labels: traces, datasets: datasets('ratio') },
      options: { scales: { y: { title: { display: true, text: 'ratio' }, suggestedMin: 1 } } },
    });
    const s2 = section('Speed: nanoseconds per operation (median)', 'Log scale; lower is better.');
    chart(s2, {
      type: 'bar',
      data: { labels: traces, datasets: datasets('nsPerOp') },
      options: { scales: { y: { type: 'logarithmic', title: { display: true, text: 'ns per op' } } } },
    });
  }

  // Reserved vs live over each replay that carries a timeline.
  const withTimeline = (data.replays || []).filter((r) => r.timeline && r.timeline.opIndex.length > 0);
  if (withTimeline.length > 0) {
    const s = section(
      'Reserved vs live bytes over the replay',
      'Sampled at about 400 points per replay (GiB).',
    );
    for (const trace of [...new Set(withTimeline.map((r) => r.trace))]) {
      const rs = withTimeline.filter((r) => r.trace === trace);
      const first = rs[0]!;
      const h = document.createElement('h3');
      h.textContent = trace;
      s.appendChild(h);
      const datasets: any[] = [
        {
          label: 'live',
          data: first.timeline!.opIndex.map((x, i) => ({ x, y: gib(first.timeline!.liveBytes[i]!) })),
          borderColor: '#111827',
          borderWidth: 2,
          pointRadius: 0,
        },
      ];
      rs.forEach((r, i) => {
        datasets.push({
          label: `reserved: ${r.policy}@${r.device}`,
          data: r.timeline!.opIndex.map((x, j) => ({ x, y: gib(r.timeline!.reservedBytes[j]!) })),
          borderColor: color(i),
          borderWidth: 1.5,
          pointRadius: 0,
        });
      });
      chart(
        s,
        {
          type: 'line',
          data: { datasets },
          options: {
            parsing: false,
            scales: {
              x: { type: 'linear', title: { display: true, text: 'operation' } },
              y: { title: { display: true, text: 'GiB' } },
            },
          },
        },
        260,
      );
    }
  }

  // Latency by size.
  for (const lat of data.latency || []) {
    const s = section(
      `Acquire+release latency on ${lat.device}`,
      `Warm pool, median of ${lat.runs} runs${
        lat.isolation === 'process-per-policy'
          ? ', each policy in its own process'
          : lat.isolation === 'in-process'
            ? ', all policies in one process'
            : ''
      }. Log scales.`,
    );
    const sizes = [...new Set([...lat.pool.map((r) => r.bytes), ...lat.raw.map((r) => r.bytes)])].sort(
      (a, b) => a - b,
    );
    const series: { name: string; rows: { bytes: number; nsPerPair: number }[] }[] = [];
    for (const p of [...new Set(lat.pool.map((r) => r.policy))])
      series.push({ name: p, rows: lat.pool.filter((r) => r.policy === p) });
    for (const a of [...new Set(lat.raw.map((r) => r.api))])
      series.push({ name: a, rows: lat.raw.filter((r) => r.api === a) });
    chart(s, {
      type: 'line',
      data: {
        labels: sizes.map(bytesLabel),
        datasets: series.map((x, i) => ({
          label: x.name,
          data: sizes.map((b) => x.rows.find((r) => r.bytes === b)?.nsPerPair ?? null),
          borderColor: color(i),
          backgroundColor: color(i),
          spanGaps: true,
        })),
      },
      options: { scales: { y: { type: 'logarithmic', title: { display: true, text: 'ns per pair' } } } },
    });
  }

  // Scaling by threads.
  for (const sc of data.scaling || []) {
    const s = section(
      `Scaling on ${sc.device}`,
      `acquire+release pairs per second, all threads together; median of ${sc.runs} runs.`,
    );
    const threads = [...new Set(sc.rows.map((r) => r.threads))].sort((a, b) => a - b);
    const modes = [...new Set(sc.rows.map((r) => r.mode))];
    const datasets: any[] = modes.map((m, i) => ({
      label: m,
      data: threads.map((t) => sc.rows.find((r) => r.mode === m && r.threads === t)?.pairsPerSecond ?? null),
      borderColor: color(i),
      backgroundColor: color(i),
    }));
    const one = sc.rows.find((r) => r.mode === modes[0] && r.threads === 1);
    if (one)
      datasets.push({
        label: `ideal (${modes[0]})`,
        data: threads.map((t) => t * one.pairsPerSecond),
        borderColor: '#9ca3af',
        borderDash: [6, 4],
        pointRadius: 0,
      });
    chart(s, {
      type: 'line',
      data: { labels: threads.map(String), datasets },
      options: {
        scales: {
          x: { title: { display: true, text: 'threads' } },
          y: { title: { display: true, text: 'pairs / s' } },
        },
      },
    });
  }

  // Capacity.
  const cap = (data.capacity || []).filter(
    (r) => r.minCapacityRatio !== null && Number.isFinite(r.minCapacityRatio),
  );
  if (cap.length > 0) {
    const s = section(
      'Capacity: smallest device that completes each trace',
      'As a multiple of peak live bytes (SimulatedDevice, bisection).',
    );
    const traces = [...new Set(cap.map((r) => r.trace))];
    const policies = [...new Set(cap.map((r) => r.policy))];
    chart(s, {
      type: 'bar',
      data: {
        labels: traces,
        datasets: policies.map((p, i) => ({
          label: p,
          data: traces.map((t) => cap.find((r) => r.trace === t && r.policy === p)?.minCapacityRatio ?? null),
          backgroundColor: color(i),
        })),
      },
      options: { scales: { y: { suggestedMin: 1, title: { display: true, text: '× peak live' } } } },
    });
  }

  // Memory maps: pool space folded into rows; unmapped light, mapped-but-free amber, blocks blue.
  const maps = (data.replays || []).filter((r) => r.memoryMap);
  if (maps.length > 0) {
    const s = section(
      'Memory map at the peak of live bytes (from pool.snapshot())',
      'Address space of the pool folded into rows, left to right then down. Grey: not mapped; amber: mapped, free; blue: live blocks (alternating shades).',
    );
    for (const r of maps) {
      const m = r.memoryMap!;
      const h = document.createElement('h3');
      h.textContent = `${r.trace} · ${r.policy}@${r.device} · op ${m.opIndex} · live ${bytesLabel(m.liveBytes)} · reserved ${bytesLabel(m.reservedBytes)}${m.blocksOmitted > 0 ? ` · ${m.blocksOmitted} blocks not drawn` : ''}`;
      s.appendChild(h);
      const canvas = document.createElement('canvas');
      canvas.dataset.kind = 'memory-map';
      canvas.width = 1100;
      canvas.height = 160;
      s.appendChild(canvas);
      const ctx = canvas.getContext('2d');
      if (!ctx) {
        state.errors.push('no 2d context');
        continue;
      }
      const runs = [...m.mapped, ...m.blocks];
      if (runs.length === 0) continue;
      const lo = Math.min(...runs.map((x) => x[0]));
      const hi = Math.max(...runs.map((x) => x[0] + x[1]));
      const rows = 16;
      const rowH = canvas.height / rows;
      const span = Math.max(1, hi - lo);
      const perRow = span / rows;
      const paint = (start: number, bytes: number, fill: string): void => {
        ctx.fillStyle = fill;
        let a = start - lo;
        const end = a + bytes;
        while (a < end) {
          const row = Math.min(rows - 1, Math.floor(a / perRow));
          const rowEnd = Math.min(end, (row + 1) * perRow);
          const x0 = ((a - row * perRow) / perRow) * canvas.width;
          const x1 = ((rowEnd - row * perRow) / perRow) * canvas.width;
          ctx.fillRect(x0, row * rowH, Math.max(0.5, x1 - x0), rowH - 1);
          if (rowEnd <= a) break;
          a = rowEnd;
        }
      };
      ctx.fillStyle = '#e5e7eb';
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      for (const [a, b] of m.mapped) paint(a, b, '#f59e0b');
      m.blocks.forEach(([a, b], i) => {
        paint(a, b, i % 2 === 0 ? '#1d4ed8' : '#3b82f6');
      });
      state.memoryMaps++;
    }
  }
  if (root.children.length === 0) section('No results', 'The bundle holds no records.');
}
