/**
 * The benchmarks' upstream (bench/http-server.ts, the compiled child process
 * the fleet-peers scenario runs) with --rate: a WAN link whose rate is shared
 * by every connection together, not granted to each; bodies stay intact and
 * every GET is counted.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BenchHttpServer, startHttpServer, statsDelta } from '../../bench/lib/http.js';

const RATE = 4_000_000; // bytes/s
const BURST = 256 * 1024; // the server's bucket (bench/http-server.ts)
const SIZE = 2_000_000;

const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

async function download(url: string): Promise<{ seconds: number; hash: string; bytes: number }> {
  const t0 = performance.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  expect(res.status).toBe(200);
  const body = Buffer.from(await res.arrayBuffer());
  return { seconds: (performance.now() - t0) / 1000, hash: sha(body), bytes: body.length };
}

describe('bench upstream --rate (the fleet-peers WAN link)', () => {
  let dir: string;
  let want: string;
  let throttled: BenchHttpServer;
  let free: BenchHttpServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fleetq-bench-throttle-'));
    const body = randomBytes(SIZE);
    want = sha(body);
    writeFileSync(join(dir, 'blob.bin'), body);
    [throttled, free] = await Promise.all([startHttpServer(dir, { rate: RATE }), startHttpServer(dir)]);
  });
  afterAll(async () => {
    await Promise.all([throttled?.stop(), free?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('one download runs at about the rate', async () => {
    const r = await download(throttled.url('blob.bin'));
    expect({ bytes: r.bytes, hash: r.hash }).toEqual({ bytes: SIZE, hash: want });
    expect(r.seconds).toBeGreaterThanOrEqual((SIZE - BURST) / RATE);
    expect((await throttled.stats()).rate).toBe(RATE);
  });

  it('three concurrent downloads share the rate: the three together take about three times as long', async () => {
    const before = await throttled.stats();
    const t0 = performance.now();
    const rs = await Promise.all([1, 2, 3].map(() => download(throttled.url('blob.bin'))));
    const seconds = (performance.now() - t0) / 1000;
    for (const r of rs) expect({ bytes: r.bytes, hash: r.hash }).toEqual({ bytes: SIZE, hash: want });
    // Each alone would take ~0.5 s; sharing, all three end near 1.5 s, not 0.5 s.
    expect(seconds).toBeGreaterThanOrEqual((3 * SIZE - BURST) / RATE);
    for (const r of rs) expect(r.seconds).toBeGreaterThanOrEqual((2 * SIZE) / RATE);
    const d = statsDelta(before, await throttled.stats());
    expect(d.gets).toEqual({ '/blob.bin': 3 });
  });

  it('without --rate the same server is not throttled', async () => {
    expect((await free.stats()).rate).toBeNull();
    const rs = await Promise.all([1, 2, 3].map(() => download(free.url('blob.bin'))));
    for (const r of rs) expect(r.hash).toBe(want);
    // 6 MB over loopback: far below the throttled 1.5 s even on a busy machine.
    expect(Math.max(...rs.map((r) => r.seconds))).toBeLessThan((3 * SIZE) / RATE);
  });
});
