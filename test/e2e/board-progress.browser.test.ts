/**
 * A pull on the board, in a real browser (Debian's Chromium, driven by
 * playwright-core): while a slow download runs (an upstream that sends 32 KiB
 * every 150 ms), the job card in the host's images queue shows Bull Board's
 * progress ring — drawn from the numeric `progress` field a pull reports
 * ({progress: 0–100, bytes, total, rate}) — and its Progress tab the bytes
 * behind it; its Logs tab shows the pull's milestones ("pull started" while
 * it runs; "verified sha256:…" once it is done). Screenshots go to
 * test-artifacts/ (not committed).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { Job } from 'bullmq';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { basic, type BoardProcess, startBoardProcess } from '../helpers/board-process.js';
import { rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const CHROMIUM = process.env.FLEETQ_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url);
const HOST = 'slow-1';
const USER = 'oncall';
const PASSWORD = 'progress-pass';
const redis = useTestRedis();
let upstream: Upstream;
let root: string;
let worker: WorkerProcess;
let q: QueueClient;
let board: BoardProcess;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium (.ci/run does)`);
  upstream = await startUpstream();
  root = tempRoot();
  worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root });
  q = await queueClient(redis.url, imageQueueName(HOST));
  board = await startBoardProcess({ REDIS_URL: redis.url, FLEETQ_BOARD_USER: USER, FLEETQ_BOARD_PASSWORD: PASSWORD });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

afterAll(async () => {
  await browser?.close();
  await board?.stop();
  await q?.close();
  await worker?.stop();
  await upstream?.stop();
  if (root) removeRoot(root);
});

/** The percentage Bull Board draws a ring for: a number, or an object's numeric `progress`. */
function ringValue(progress: unknown): number | undefined {
  if (typeof progress === 'number') return progress;
  if (progress && typeof progress === 'object' && typeof (progress as { progress?: unknown }).progress === 'number') return (progress as { progress: number }).progress;
  return undefined;
}

/** The board's name for a host's images queue (the URL key), as its API lists it. */
async function boardQueueName(host: string): Promise<string> {
  const res = await fetch(`${board.url}/api/queues`, { headers: basic(USER, PASSWORD) });
  expect(res.status).toBe(200);
  const names = ((await res.json()) as { queues: Array<{ name: string }> }).queues.map((x) => x.name);
  const want = imageQueueName(host);
  const name = names.find((n) => n === want) ?? names.find((n) => n.endsWith(want));
  if (!name) throw new Error(`the board lists no queue for ${want}: ${names.join(', ')}`);
  return name;
}

/** Open one of the job card's tabs (Data, Progress, Options, Logs, Error). */
async function openTab(page: Page, tab: string): Promise<void> {
  await page.getByRole('tab', { name: tab, exact: true }).or(page.getByRole('button', { name: tab, exact: true })).first().click();
}

describe('a pull on the board, in Chromium', () => {
  it('while the download runs: a progress ring, the bytes in the Progress tab, "pull started" in the Logs tab; afterwards "verified sha256:…"', async () => {
    const img = rawImage(4 * 1024 * 1024);
    const url = upstream.serve('/slow/disk.img', img.body, { chunkSize: 32 * 1024, chunkDelayMs: 150 });
    const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 10 });

    // The worker reports progress as {progress: 0–100, bytes, total, rate}.
    let progress: unknown;
    await expect
      .poll(
        async () => {
          progress = (await Job.fromId(q.queue, jobId))?.progress;
          return ringValue(progress) ?? -1;
        },
        { timeout: 15_000, interval: 200, message: `job.progress has no numeric progress field: ${JSON.stringify(progress)}` },
      )
      .toBeGreaterThan(0);
    expect(progress).toMatchObject({ bytes: expect.any(Number), total: img.body.length });

    const ctx = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1400, height: 1000 } });
    const page = await ctx.newPage();
    const name = await boardQueueName(HOST);
    const res = await page.goto(`${board.url}/queue/${encodeURIComponent(name)}?status=active`);
    expect(res?.status()).toBe(200);
    await expect.poll(() => page.getByText(jobId).count(), { timeout: 15_000 }).toBeGreaterThan(0);

    // The ring: Bull Board's Progress component (role progressbar) labelled "NN%", mid-download.
    const ring = page.getByRole('progressbar').first();
    await expect.poll(() => ring.count(), { timeout: 15_000, message: 'no progress ring on the active job' }).toBe(1);
    const label = await ring.locator('tspan').first().textContent();
    expect(label).toMatch(/^\d{1,3}%$/);
    const pct = Number(label!.slice(0, -1));
    expect(pct).toBeGreaterThan(0);
    expect(pct).toBeLessThan(100);
    expect(await q.queue.getJobState(jobId)).toBe('active');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL('board-progress.png', ARTIFACTS).pathname, fullPage: true });

    // The rest of the progress object, in the Progress tab.
    await openTab(page, 'Progress');
    await expect.poll(() => page.getByText(/"?bytes"?\s*:/).count(), { timeout: 10_000 }).toBeGreaterThan(0);
    await expect.poll(() => page.getByText(/"?total"?\s*:/).count()).toBeGreaterThan(0);

    // The pull's own log, while it runs.
    await openTab(page, 'Logs');
    await expect.poll(() => page.getByText(/pull started/).count(), { timeout: 10_000, message: 'the Logs tab does not show "pull started"' }).toBeGreaterThan(0);
    expect(await page.getByText('No logs available').count()).toBe(0);
    await page.screenshot({ path: new URL('board-progress-logs.png', ARTIFACTS).pathname, fullPage: true });

    // Done: the completed job's log tells the rest of the story.
    const done = await q.settle(jobId, 60_000);
    expect(done.state).toBe('completed');
    expect(done.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    await page.goto(`${board.url}/queue/${encodeURIComponent(name)}?status=completed`);
    await expect.poll(() => page.getByText(jobId).count(), { timeout: 15_000 }).toBeGreaterThan(0);
    await openTab(page, 'Logs');
    await expect.poll(() => page.getByText(/pull started/).count(), { timeout: 10_000 }).toBeGreaterThan(0);
    await expect.poll(() => page.getByText(new RegExp(`verified ${img.digest}`)).count(), { timeout: 10_000, message: `the Logs tab does not show "verified ${img.digest}"` }).toBeGreaterThan(0);
    await page.screenshot({ path: new URL('board-progress-done.png', ARTIFACTS).pathname, fullPage: true });
    await ctx.close();
  }, 120_000);
});
