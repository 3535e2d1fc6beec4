/**
 * Socket reads into reused buffers (fetch/read-ring.ts): which slots a release
 * frees, and — over real loopback HTTP through undici — that a consumer that
 * hashes on receipt, writes later and releases only after the write gets every
 * byte intact while the slots are being reused, for Content-Length and chunked
 * bodies sent in writes of every size.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setImmediate as tick } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadRingConnector, ReadRing, releaseReadBuffers } from '../../../src/fetch/read-ring.js';

describe('ReadRing', () => {
  it('frees the slots filled before the released chunk, never that chunk’s own slot or later ones', () => {
    const ring = new ReadRing();
    const bufs = [ring.next(), ring.next(), ring.next(), ring.next()];
    expect(new Set(bufs.map((b) => b.buffer)).size).toBe(4);
    for (const b of bufs) ring.filled(b);
    expect(ring.size).toEqual({ slots: 4, busy: 4 });
    // Done with everything before a chunk read into the third slot.
    releaseReadBuffers(bufs[2]!.subarray(10, 20));
    expect(ring.size).toEqual({ slots: 4, busy: 2 });
    // The freed slots come back; no new slot is made while one is free.
    const again = [ring.next(), ring.next()];
    expect(new Set(again.map((b) => b.buffer))).toEqual(new Set([bufs[0]!.buffer, bufs[1]!.buffer]));
    expect(ring.size.slots).toBe(4);
  });

  it('hands out fresh, untracked buffers once every slot is busy, and ignores chunks it does not own', () => {
    const ring = new ReadRing();
    const slots: Buffer[] = [];
    for (;;) {
      const b = ring.next();
      if (slots.some((s) => s.buffer === b.buffer)) throw new Error('a busy slot was handed out twice');
      ring.filled(b);
      if (ring.size.slots === slots.length) {
        // Not a slot: a fresh buffer (the ring is full).
        expect(ring.size.busy).toBe(slots.length);
        releaseReadBuffers(b);
        expect(ring.size.busy).toBe(slots.length);
        break;
      }
      slots.push(b);
    }
    expect(slots.length).toBeGreaterThan(8);
    releaseReadBuffers(Buffer.alloc(16));
    expect(ring.size.busy).toBe(slots.length);
  });
});

describe('plain-http reads into a ring, over loopback', () => {
  const body = randomBytes(8 * 1024 * 1024 + 12345);
  const digest = createHash('sha256').update(body).digest('hex');
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunked = req.url === '/chunked';
      res.writeHead(200, chunked ? {} : { 'content-length': body.length });
      // Chunked: writes of every size, from 1 byte to 200 KiB, so reads and chunk framing fall anywhere
      // (undici then often takes several buffered reads at once: a copy, which the ring never sees).
      // Content-Length: 64 KiB writes, like a file server.
      let off = 0;
      let i = 0;
      const sizes = chunked ? [1, 7, 4096, 65536, 65537, 200 * 1024, 333] : [65536];
      const more = () => {
        while (off < body.length) {
          const n = Math.min(sizes[i++ % sizes.length]!, body.length - off);
          const ok = res.write(body.subarray(off, off + n));
          off += n;
          if (!ok) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  for (const path of ['/length', '/chunked']) {
    it(`keeps every byte of a ${path.slice(1)} body intact while slots are reused (twice on one keep-alive socket)`, async () => {
      const agent = new Agent({ connect: createReadRingConnector(10_000) });
      try {
        for (let round = 0; round < 2; round++) {
          const res = await request(`${base}${path}`, { dispatcher: agent });
          const onReceipt = createHash('sha256');
          const written: Buffer[] = [];
          let batch: Buffer[] = [];
          let batchBytes = 0;
          const seen = new Set<ArrayBufferLike>();
          let chunks = 0;
          // Like BlobWriter: hash at once, "write" (copy) a 1 MiB batch a little later, then release.
          const write = async (bufs: Buffer[]) => {
            await tick();
            written.push(Buffer.concat(bufs));
            releaseReadBuffers(bufs[bufs.length - 1]!);
          };
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
            onReceipt.update(chunk);
            seen.add(chunk.buffer);
            chunks++;
            batch.push(chunk);
            batchBytes += chunk.length;
            if (batchBytes >= 1024 * 1024) {
              await write(batch);
              batch = [];
              batchBytes = 0;
            }
          }
          if (batch.length) await write(batch);
          expect(onReceipt.digest('hex')).toBe(digest);
          expect(createHash('sha256').update(Buffer.concat(written)).digest('hex')).toBe(digest);
          // From a file-like server the body comes through reused buffers, not one per read.
          if (path === '/length') expect(seen.size).toBeLessThan(chunks / 2);
        }
      } finally {
        await agent.close();
      }
    });
  }
});
