/**
 * The dashboard in a real browser: headless Chromium (Debian's) driven by
 * playwright-core. Loads the board with credentials, sees two hosts' queues
 * and a failed job's reason, retries it from the UI (through the board's CSRF
 * check: the UI echoes the XSRF-TOKEN cookie), and gets the Basic challenge
 * (401, WWW-Authenticate; the API refuses too) without credentials or with
 * wrong ones. With every non-loopback request blocked, the page makes none
 * and still renders (no font CDN; the CSP is not violated). A screenshot is
 * kept in test-artifacts/ (not committed).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { boardName, imageQueueName, queueName } from '../../src/queues/names.js';
import { type BoardProcess, startBoardProcess } from '../helpers/board-process.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const CHROMIUM = process.env.FLEETQ_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url);
const redis = useTestRedis();
let upstream: Upstream;
const roots: string[] = [];
const workers: WorkerProcess[] = [];
let q1: QueueClient;
let board: BoardProcess;
let browser: Browser;
let failedId: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium (.ci/run does)`);
  upstream = await startUpstream();
  for (const host of ['web-1', 'web-2']) {
    const root = tempRoot();
    roots.push(root);
    workers.push(await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: host, FLEETQ_ROOT: root }));
  }
  q1 = await queueClient(redis.url, imageQueueName('web-1'));
  const img = qcow2Image(500);
  await q1.settle((await enqueueEnsureImage(q1.queue, { image: upstream.serve('/web/ok.qcow2', img.body), imageDigest: img.digest }, { host: 'web-1', attempts: 1, backoffMs: 10 })).jobId);
  failedId = (await enqueueEnsureImage(q1.queue, { image: upstream.url('/web/missing.qcow2'), imageDigest: qcow2Image(501).digest }, { host: 'web-1', attempts: 1, backoffMs: 10 })).jobId;
  expect((await q1.settle(failedId)).state).toBe('failed');
  board = await startBoardProcess({ REDIS_URL: redis.url, FLEETQ_BOARD_USER: 'oncall', FLEETQ_BOARD_PASSWORD: 'browser-pass' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

afterAll(async () => {
  await browser?.close();
  await board?.stop();
  await q1?.close();
  for (const w of workers) await w.stop();
  await upstream?.stop();
  for (const r of roots) removeRoot(r);
});

const isLoopbackUrl = (u: string) => {
  try {
    return ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(u).hostname);
  } catch {
    return false;
  }
};

/** Cut the page off from everything but loopback, and record what it asks for and what the CSP refuses. */
async function offline(ctx: BrowserContext, page: Page) {
  const requests: string[] = [];
  const blocked: string[] = [];
  const cspErrors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => {
    if (/Content[- ]Security[- ]Policy/i.test(m.text())) cspErrors.push(m.text());
  });
  await ctx.route('**/*', (route) => {
    const url = route.request().url();
    if (isLoopbackUrl(url) || url.startsWith('data:')) return route.continue();
    blocked.push(url);
    return route.abort('internetdisconnected');
  });
  return { requests, blocked, cspErrors, foreign: () => requests.filter((u) => !isLoopbackUrl(u) && !u.startsWith('data:')) };
}

describe('the board in Chromium', () => {
  it('without credentials (or with wrong ones) the browser gets the Basic challenge, loads nothing of the board, and the API refuses too', async () => {
    for (const httpCredentials of [undefined, { username: 'oncall', password: 'wrong-pass' }]) {
      const ctx = await browser.newContext(httpCredentials ? { httpCredentials } : {});
      const page = await ctx.newPage();
      const requests: string[] = [];
      page.on('request', (r) => requests.push(new URL(r.url()).pathname));
      const response = page.waitForResponse((r) => r.url() === `${board.url}/`);
      // Chromium turns an unanswerable auth challenge into a navigation error; the response is what counts.
      await page.goto(`${board.url}/`).catch(() => undefined);
      const r = await response;
      expect(r.status()).toBe(401);
      // A challenge the browser can answer (its login prompt), not an error page of the app.
      expect(r.headers()['www-authenticate']).toMatch(/^Basic realm="fleetq"/);
      expect(r.headers()['content-type']).toMatch(/^text\/plain/);
      // The page never got as far as the board's scripts or its API.
      expect(requests.filter((p) => p.startsWith('/static/') || p.startsWith('/api/'))).toEqual([]);
      // The API answers the same browser the same way (it sends the context's credentials, if any).
      for (const path of ['/api/queues', `/api/queues/${encodeURIComponent(boardName('images', 'web-1'))}/${failedId}`]) {
        const api = await ctx.request.get(`${board.url}${path}`);
        expect(api.status(), path).toBe(401);
        expect(api.headers()['www-authenticate']).toMatch(/^Basic realm="fleetq"/);
        expect((await api.text()).trim()).toBe('authentication required');
      }
      await ctx.close();
    }
  });

  it('with credentials: both hosts\' queues, the failed job\'s reason, retry from the UI', async () => {
    const ctx = await browser.newContext({ httpCredentials: { username: 'oncall', password: 'browser-pass' }, viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    const net = await offline(ctx, page);
    const res = await page.goto(`${board.url}/`);
    expect(res?.status()).toBe(200);
    // The sidebar groups the queues by host (Bull Board splits the board name `<host>:<queue>` on ":").
    for (const name of ['web-1', 'web-2', queueName('images', 'web-1'), queueName('images', 'web-2'), queueName('restores', 'web-1'), queueName('restores', 'web-2')]) {
      await expect.poll(() => page.getByText(name, { exact: true }).count(), { timeout: 15_000 }).toBeGreaterThan(0);
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL('board-overview.png', ARTIFACTS).pathname, fullPage: true });

    await page.goto(`${board.url}/queue/${encodeURIComponent(boardName('images', 'web-1'))}?status=failed`);
    await expect.poll(() => page.getByText(/HTTP 404/).count(), { timeout: 15_000 }).toBeGreaterThan(0);
    await page.screenshot({ path: new URL('board-failed-job.png', ARTIFACTS).pathname, fullPage: true });
    expect(await page.getByText(failedId).count()).toBeGreaterThan(0);

    const before = upstream.gets('/web/missing.qcow2');
    // The job card's retry button (an icon; "Retry all" is the queue-level one).
    const retry = page.locator('button:has(svg.lucide-refresh-cw)').filter({ hasNotText: /retry all/i });
    await expect.poll(() => retry.count()).toBe(1);
    await retry.click();
    const confirm = page.getByRole('button', { name: /^(confirm|retry|ok|yes)$/i });
    if (await confirm.count()) await confirm.first().click();
    // The retried job really ran again (and failed again: the URL still 404s).
    await expect.poll(() => upstream.gets('/web/missing.qcow2'), { timeout: 15_000, interval: 100 }).toBe(before + 1);
    expect(net.foreign()).toEqual([]);
    expect(net.cspErrors).toEqual([]);
    await ctx.close();
  });

  it('with the network cut, the page asks nothing of any other host (no font CDN) and still renders the queues', async () => {
    const ctx = await browser.newContext({ httpCredentials: { username: 'oncall', password: 'browser-pass' } });
    const page = await ctx.newPage();
    const net = await offline(ctx, page);
    const res = await page.goto(`${board.url}/`, { waitUntil: 'networkidle' });
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toMatch(/default-src 'self'/);
    for (const name of [queueName('images', 'web-1'), queueName('restores', 'web-2')]) {
      await expect.poll(() => page.getByText(name, { exact: true }).count(), { timeout: 15_000 }).toBeGreaterThan(0);
    }
    // The page did load its own scripts, styles and API from the board…
    expect(net.requests.some((u) => /\/static\/js\/main\.[0-9a-f]+\.js$/.test(u))).toBe(true);
    expect(net.requests.some((u) => /\/static\/css\/main\.[0-9a-f]+\.css$/.test(u))).toBe(true);
    expect(net.requests.some((u) => u.includes('/api/queues'))).toBe(true);
    // …and nothing from anywhere else: not even an attempt that the route had to block.
    expect(net.foreign()).toEqual([]);
    expect(net.blocked).toEqual([]);
    expect(await page.locator('link[href*="fonts.googleapis.com"]').count()).toBe(0);
    expect(net.cspErrors).toEqual([]);
    await ctx.close();
  });
});
