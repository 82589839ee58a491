/**
 * Opens an HTML file in headless Chromium (Debian's `chromium` package, through playwright-core)
 * and reports what the report page rendered: chart instances, canvases with non-blank pixels,
 * page errors. Shared by the report test; not a test itself.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.GPUPOOL_CHROMIUM ?? '/usr/bin/chromium';

export interface RenderedReport {
  charts: number;
  memoryMaps: number;
  chartInstances: number;
  /** Per canvas: its kind and how many pixels are not fully transparent / not white. */
  canvases: { kind: string; inkedPixels: number }[];
  errors: string[];
}

export async function renderInChromium(htmlPath: string, screenshotPath?: string): Promise<RenderedReport> {
  const profile = mkdtempSync(join(tmpdir(), 'gpupool-chromium-'));
  // A fresh profile each time (Playwright takes it as userDataDir, not as --user-data-dir).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    viewport: { width: 1200, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(pathToFileURL(htmlPath).href, { waitUntil: 'load' });
    await page.waitForFunction(() => (window as any).__gpupoolReport !== undefined, undefined, {
      timeout: 15_000,
    });
    const result = await page.evaluate(() => {
      const w = window as any;
      const canvases = [...document.querySelectorAll('canvas')].map((c) => {
        const ctx = c.getContext('2d')!;
        const { data } = ctx.getImageData(0, 0, c.width, c.height);
        let inked = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i + 3]! > 0 && !(data[i]! > 250 && data[i + 1]! > 250 && data[i + 2]! > 250)) inked++;
        }
        return { kind: c.dataset.kind ?? '', inkedPixels: inked };
      });
      return {
        charts: w.__gpupoolReport.charts as number,
        memoryMaps: w.__gpupoolReport.memoryMaps as number,
        errors: w.__gpupoolReport.errors as string[],
        chartInstances: Object.keys(w.Chart?.instances ?? {}).length,
        canvases,
      };
    });
    if (screenshotPath !== undefined) await page.screenshot({ path: screenshotPath, fullPage: true });
    return { ...result, errors: [...errors, ...result.errors] };
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
