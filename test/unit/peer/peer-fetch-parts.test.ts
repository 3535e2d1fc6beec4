/**
 * The parts of peer fetching that need no network: which holders a host may
 * use, what a failed peer fetch is reported as, Content-Range parsing, and a
 * download in progress streamed from a real temp file (held-open reads, the
 * descriptor kept past unlink, cut short on abort).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { appendFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DownloadStalledError, DownloadTimeoutError, HttpStatusError, NetworkError, RangeResponseError, TruncatedBodyError } from '../../../src/fetch/fetch-errors.js';
import { parseContentRange } from '../../../src/fetch/fetch-image.js';
import { Digest } from '../../../src/lib/digest.js';
import { isPeerBusy, peerBlobUrl, peerErrorReason } from '../../../src/peer/fleet.js';
import { type Holder, usableBy } from '../../../src/peer/holders.js';
import { InProgressDownloads } from '../../../src/peer/in-progress.js';
import { DigestMismatchError, StoreFullError } from '../../../src/store/store-errors.js';

const D = Digest.parse(`sha256:${'ef'.repeat(32)}`);

describe('usableBy', () => {
  const h = (host: string, state: 'complete' | 'partial', chain?: string[]): Holder => ({ host, state, chain, peerUrl: 'http://x:1', instance: 'i', at: 0, load: 0 });
  it('drops this host and partial holders whose bytes come through it (no waiting on oneself)', () => {
    const holders = [h('a', 'complete'), h('self', 'complete'), h('b', 'partial', ['self']), h('c', 'partial', ['b', 'self']), h('d', 'partial', ['a']), h('e', 'partial')];
    expect(usableBy(holders, 'self').map((x) => x.host)).toEqual(['a', 'd', 'e']);
  });
});

describe('peerErrorReason', () => {
  it.each([
    [new HttpStatusError(404, 'u'), 'request', 'not-found'],
    [new HttpStatusError(401, 'u'), 'request', 'refused'],
    [new HttpStatusError(503, 'u'), 'request', 'refused'],
    [new RangeResponseError('x'), 'request', 'refused'],
    [new NetworkError('ECONNREFUSED'), 'request', 'refused'],
    [new NetworkError('reset'), 'body', 'died'],
    [new TruncatedBodyError('cut'), 'body', 'died'],
    [new DownloadTimeoutError('slow'), 'body', 'timeout'],
    [new DownloadStalledError('slow'), 'body', 'timeout'],
  ] as const)('%s in the %s → %s', (err, phase, want) => {
    expect(peerErrorReason(err, phase)).toBe(want);
  });
  it('a 503 is the peer being busy (all its stream slots taken): isPeerBusy, which the pull checks before any error reason', () => {
    expect(isPeerBusy(new HttpStatusError(503, 'u'))).toBe(true);
    for (const err of [new HttpStatusError(500, 'u'), new HttpStatusError(429, 'u'), new NetworkError('reset'), new Error('503')]) expect(isPeerBusy(err)).toBe(false);
  });
  it('is not the peer: bytes that do not verify (decided by the pull), store errors, anything else', () => {
    expect(peerErrorReason(new DigestMismatchError(D, D, 'u'), 'body')).toBeUndefined();
    expect(peerErrorReason(new StoreFullError('full'), 'body')).toBeUndefined();
    expect(peerErrorReason(new Error('x'), 'body')).toBeUndefined();
  });
});

describe('peerBlobUrl', () => {
  it('only a plain http(s) origin gets the blob path (and the token)', () => {
    expect(peerBlobUrl('http://10.0.0.5:7480', D)).toBe(`http://10.0.0.5:7480/blobs/${D.value}`);
    expect(peerBlobUrl('https://[fd00::5]:7480/', D)).toBe(`https://[fd00::5]:7480/blobs/${D.value}`);
    for (const bad of ['file:///etc/passwd', 'http://u:p@h:1', 'http://h:1/x', 'http://h:1/?q', 'http://h:1/#f', 'gopher://h:1', 'not a url']) {
      expect(peerBlobUrl(bad, D), bad).toBeUndefined();
    }
  });
});

describe('parseContentRange', () => {
  it.each([
    ['bytes 0-9/10', { start: 0, end: 9, total: 10 }],
    ['bytes 5-9/*', { start: 5, end: 9, total: null }],
    ['bytes 5-10/10', undefined],
    ['bytes 9-5/10', undefined],
    ['bytes */10', undefined],
    ['items 0-9/10', undefined],
    [undefined, undefined],
  ])('%s', (v, want) => {
    expect(parseContentRange(v)).toEqual(want);
  });
});

describe('a download in progress, streamed', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fleetq-inprog-'));
    file = join(dir, 'pull-1.img');
    writeFileSync(file, Buffer.alloc(0));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const collect = (s: Readable) =>
    new Promise<{ body: Buffer; err?: Error }>((resolve) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => resolve({ body: Buffer.concat(chunks) }));
      s.on('error', (err) => resolve({ body: Buffer.concat(chunks), err }));
    });

  it('sends what is written, holds the response open until more arrives, ends at the range end; reads survive unlink', async () => {
    const body = randomBytes(1_000_000);
    const reg = new InProgressDownloads();
    const dl = reg.start(D, body.length, await open(file, 'r'))!;
    expect(reg.start(D, body.length, await open(file, 'r'))).toBeUndefined(); // one per digest
    const blob = (await reg.source().open(D))!;
    expect(blob).toMatchObject({ size: body.length, kind: 'in-progress' });
    const whole = collect(blob.stream(0, body.length - 1));
    const tail = collect(blob.stream(600_000, 700_000));
    // The writer's own descriptor, like BlobWriter's.
    const w = await open(file, 'a');
    let got = 0;
    for (const cut of [300_000, 650_000, body.length]) {
      await w.write(body.subarray(got, cut));
      got = cut;
      dl.advance(got);
      if (cut === 650_000) unlinkSync(file); // the commit renamed or converted it: the descriptor still reads
    }
    await w.close();
    dl.complete();
    expect((await whole).body.equals(body)).toBe(true);
    expect((await tail).body.equals(body.subarray(600_000, 700_001))).toBe(true);
    await blob.close();
    expect(await reg.source().open(D)).toBeUndefined(); // over: no longer served as in progress
  });

  it('ends open responses with an error (a short body) when the download is aborted', async () => {
    const body = randomBytes(200_000);
    const reg = new InProgressDownloads();
    const dl = reg.start(D, body.length, await open(file, 'r'))!;
    const blob = (await reg.source().open(D))!;
    const r = collect(blob.stream(0, body.length - 1));
    await appendFile(file, body.subarray(0, 50_000));
    dl.advance(50_000);
    await new Promise((res) => setImmediate(res));
    dl.abort();
    const { body: got, err } = await r;
    expect(err?.message).toMatch(/aborted/);
    expect(got.equals(body.subarray(0, got.length))).toBe(true);
    expect(got.length).toBeLessThanOrEqual(50_000);
    await blob.close();
  });
});
