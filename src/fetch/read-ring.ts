/**
 * Socket reads into reused buffers, for plain-http connections.
 *
 * By default every 64 KiB socket read is a fresh ArrayBuffer that is garbage
 * at once but freed only when V8 next collects: during a download at hundreds
 * of MB/s that is ~25-35 MB of dead read buffers held at any time. Here each
 * connection reads (net's `onread`) into a small ring of slots instead, and a
 * slot is reused only once its consumer says every byte delivered before a
 * later chunk is done with (`releaseReadBuffers`): bytes reach the consumer in
 * read order (undici parses them in order, and only ever puts back an unread
 * tail of the newest read), so "done with a chunk from fill N" frees every
 * slot filled before N. A consumer that never releases (an error body, a
 * redirect's body) costs nothing: with every slot taken, reads get fresh
 * buffers as before. TLS connections keep undici's default reads.
 */
import type { Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { buildConnector } from 'undici';

const SLOT_BYTES = 64 * 1024;
/** Slots per connection at most (4 MiB): the writer holds ≤ 2 MiB, undici and the socket ~128 KiB. */
const MAX_SLOTS = 64;

const ringOf = new WeakMap<ArrayBufferLike, ReadRing>();

export class ReadRing {
  private fills = 0;
  private slots = 0;
  private readonly free: Buffer[] = [];
  /** Slots holding bytes not released yet, with the number of the read that filled them. */
  private readonly busy = new Map<ArrayBufferLike, { buf: Buffer; fill: number }>();

  /** The buffer for the next read: a free slot, a new slot, or (all slots busy) a fresh buffer nobody reuses. */
  next(): Buffer {
    let buf = this.free.pop();
    if (!buf && this.slots < MAX_SLOTS) {
      buf = Buffer.allocUnsafeSlow(SLOT_BYTES);
      this.slots++;
      ringOf.set(buf.buffer, this);
    }
    return buf ?? Buffer.allocUnsafeSlow(SLOT_BYTES);
  }

  /** A read went into `buf`: it is busy until released. */
  filled(buf: Buffer): void {
    if (ringOf.get(buf.buffer) === this) this.busy.set(buf.buffer, { buf, fill: ++this.fills });
  }

  /** The consumer is done with every byte before `chunk`: slots filled before chunk's are free again. */
  release(chunk: Uint8Array): void {
    const at = this.busy.get(chunk.buffer);
    if (!at) return;
    for (const [ab, e] of this.busy) {
      if (e.fill < at.fill) {
        this.busy.delete(ab);
        this.free.push(e.buf);
      }
    }
  }

  /** Slots in use (for tests). */
  get size(): { slots: number; busy: number } {
    return { slots: this.slots, busy: this.busy.size };
  }
}

/**
 * The consumer has hashed and written every byte it was handed before
 * `chunk` (chunk itself may still be in use): their read buffers may be
 * reused. A no-op for chunks that did not come from a ring.
 */
export function releaseReadBuffers(chunk: Uint8Array): void {
  ringOf.get(chunk.buffer)?.release(chunk);
}

/** undici's connector, with plain-http sockets reading into a per-connection ReadRing. `tls`: options for https connections (e.g. `ca`). */
export function createReadRingConnector(timeoutMs: number, tls: ConnectionOptions = {}): buildConnector.connector {
  const plain = buildConnector({ ...tls, timeout: timeoutMs } as buildConnector.BuildOptions);
  return (opts, callback) => {
    if (opts.protocol !== 'http:') return plain(opts, callback);
    const ring = new ReadRing();
    const onread = {
      buffer: () => ring.next(),
      callback(this: Socket, nread: number, buf: Buffer): boolean {
        ring.filled(buf);
        return this.push(buf.subarray(0, nread));
      },
    };
    // net.connect options pass through buildConnector (undici's types do not list onread).
    return buildConnector({ timeout: timeoutMs, onread } as buildConnector.BuildOptions)(opts, callback);
  };
}
