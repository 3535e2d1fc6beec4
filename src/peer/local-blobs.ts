/**
 * What this host serves to its peers and announces as holder (only on a
 * worker with FLEETQ_PEER_LISTEN):
 *
 *   - a blob it committed as received (its own hash): `complete` holder;
 *   - a pinned blob it first finds present (once per digest per process, in
 *     the background, never on the cache-hit path): hashed once, then
 *     announced, or withdrawn when it does not hash to its name or is gone;
 *   - a pinned download in progress with a known size: `partial` holder,
 *     streamed up to the writer's watermark (in-progress.ts); replaced by
 *     `complete` at commit, withdrawn on abort;
 *   - the blob server asking for a digest it has neither committed (and
 *     verified) nor in progress: the holder entry is withdrawn (GC).
 *
 * Announcements go to Redis through a `HolderAnnouncer`, attached once the
 * worker's connections are up; they are best effort (logged, never thrown)
 * and applied in order.
 */
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Digest } from '../lib/digest.js';
import { errorMessage } from '../lib/errors.js';
import { statBlob } from '../store/blob-store.js';
import type { BlobWriter } from '../store/blob-writer.js';
import { blobPath, type StorePaths } from '../store/paths.js';
import { type BlobSource, committedBlobs } from './blob-source.js';
import { InProgressDownloads } from './in-progress.js';
import { VerifiedBlobs } from './verified-blobs.js';

export interface HolderAnnouncer {
  complete(digest: Digest, size: number): Promise<void>;
  partial(digest: Digest, size: number, chain: readonly string[]): Promise<void>;
  /** Drop this instance's partial entry (a complete one stays). */
  removePartial(digest: Digest): Promise<void>;
  /** Drop this host's entry (unless it is another worker process's partial one). */
  remove(digest: Digest): Promise<void>;
}

/** A pinned download served to peers while it is written. */
export interface PartialServing {
  /** Announce (or re-announce) the `partial` entry with the hosts the bytes come through (empty: upstream). */
  announce(chain: readonly string[]): void;
  /** The commit went through (call after `LocalBlobs.committed`). */
  complete(): void;
  /** The download failed or restarts: open responses end short, the partial entry is withdrawn (resolves once it is). */
  abort(): Promise<void>;
}

export class LocalBlobs {
  readonly verified = new VerifiedBlobs();
  readonly downloads = new InProgressDownloads();
  /** Digests announced or being verified by this process (the once-per-digest guard of `foundPresent`). */
  private readonly seen = new Set<string>();
  private announcer: HolderAnnouncer | undefined;
  private queue: Promise<void> = Promise.resolve();
  /** Background verifications, one at a time (a restart that finds many blobs does not hash them all at once). */
  private verifying: Promise<void> = Promise.resolve();

  constructor(
    private readonly paths: StorePaths,
    private readonly log: Logger,
  ) {}

  /** Wire the Redis side (after the worker's connections are up). */
  attach(announcer: HolderAnnouncer): void {
    this.announcer = announcer;
  }

  /** Announcements in order, best effort. */
  private announce(what: string, digest: Digest, fn: (a: HolderAnnouncer) => Promise<void>): Promise<void> {
    const run = async () => {
      const a = this.announcer;
      if (!a) return;
      try {
        await fn(a);
      } catch (err) {
        this.log.warn({ digest: digest.value, err: errorMessage(err) }, `peer: could not ${what}`);
      }
    };
    this.queue = this.queue.then(run);
    return this.queue;
  }

  /**
   * The blob server's source: a download in progress, else a committed blob
   * known (or hashed now) to hash to its name. When neither exists the host
   * withdraws itself as holder of the digest.
   */
  source(): BlobSource {
    const committed = committedBlobs(this.paths, this.verified);
    const inProgress = this.downloads.source();
    return {
      open: async (digest) => {
        const blob = (await inProgress.open(digest)) ?? (await committed.open(digest));
        if (blob) return blob;
        if (!this.downloads.get(digest)) {
          const present = statBlob(this.paths, digest) !== undefined;
          this.log.info({ digest: digest.value, reason: present ? 'does not hash to its name' : 'gone' }, 'peer: blob asked for is not servable: withdrawn as holder');
          this.seen.delete(digest.hex);
          void this.announce('withdraw a holder entry', digest, (a) => a.remove(digest));
        }
        return undefined;
      },
    };
  }

  /**
   * A pinned blob was found present (the cache-hit path): the first time per
   * digest and process, hash it in the background, then announce it (or
   * withdraw it). Synchronous and cheap: one Set lookup.
   */
  foundPresent(digest: Digest): void {
    if (this.seen.has(digest.hex)) return;
    this.seen.add(digest.hex);
    this.verifying = this.verifying.then(() => this.verifyAndAnnounce(digest));
  }

  private async verifyAndAnnounce(digest: Digest): Promise<void> {
    try {
      const verdict = await this.verified.verifyFile(this.paths, digest);
      if (verdict === 'ok') {
        const size = statBlob(this.paths, digest)?.size;
        if (size !== undefined) {
          this.log.debug({ digest: digest.value }, 'peer: present blob verified, announced as holder');
          await this.announce('announce a holder', digest, (a) => a.complete(digest, size));
        }
        return;
      }
      this.log.debug({ digest: digest.value, verdict }, 'peer: present blob not servable (converted at commit, changed, or gone)');
      if (verdict === 'missing') this.seen.delete(digest.hex);
      if (!this.downloads.get(digest)) await this.announce('withdraw a holder entry', digest, (a) => a.remove(digest));
    } catch (err) {
      this.seen.delete(digest.hex);
      this.log.warn({ digest: digest.value, err: errorMessage(err) }, 'peer: could not verify a present blob');
    }
  }

  /**
   * This process committed `digest`. As received (no conversion, its own
   * file): verified by the writer's hash, announced `complete`. Converted:
   * never served, this instance's partial entry is withdrawn. A blob that was
   * already there: verified in the background like a present one.
   */
  async committed(digest: Digest, c: { asReceived: boolean; converted: boolean }): Promise<void> {
    this.seen.add(digest.hex);
    let st;
    try {
      st = await stat(blobPath(this.paths, digest));
    } catch {
      return;
    }
    if (c.asReceived) {
      this.verified.record(digest, st, true);
      await this.announce('announce a holder', digest, (a) => a.complete(digest, st.size));
      return;
    }
    if (c.converted) {
      this.verified.record(digest, st, false);
      await this.announce('withdraw a partial holder entry', digest, (a) => a.removePartial(digest));
      return;
    }
    this.seen.delete(digest.hex);
    await this.announce('withdraw a partial holder entry', digest, (a) => a.removePartial(digest));
    this.foundPresent(digest);
  }

  /**
   * Serve the writer's download of `digest` (final size `size`) to peers while
   * it is written. Undefined when this process already serves one for the
   * digest, or the temp file cannot be opened.
   */
  async servePartial(writer: BlobWriter, digest: Digest, size: number): Promise<PartialServing | undefined> {
    let file;
    try {
      file = await writer.openReader();
    } catch (err) {
      this.log.debug({ digest: digest.value, err: errorMessage(err) }, 'peer: cannot serve the download in progress');
      return undefined;
    }
    const dl = this.downloads.start(digest, size, file);
    if (!dl) return undefined;
    dl.advance(writer.flushed);
    writer.onFlushed = (n) => dl.advance(n);
    let announced: string | undefined;
    return {
      announce: (chain) => {
        const key = chain.join(' ');
        if (key === announced) return;
        announced = key;
        this.log.debug({ digest: digest.value, size, chain }, 'peer: serving the download in progress (partial holder)');
        void this.announce('announce a partial holder', digest, (a) => a.partial(digest, size, chain));
      },
      complete: () => dl.complete(),
      abort: async () => {
        dl.abort();
        writer.onFlushed = undefined;
        if (announced !== undefined) await this.announce('withdraw a partial holder entry', digest, (a) => a.removePartial(digest));
      },
    };
  }
}
