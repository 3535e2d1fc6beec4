/**
 * Which committed blobs hash to their name, as this process knows it. Only
 * those are served to peers and announced as holders: a raw or old-qcow2
 * body is converted at commit, so its blob's bytes are not the pinned
 * digest's, and a file may have been changed on disk since.
 *
 * A verdict is kept per file identity (device, inode, size, mtime): a blob
 * replaced or rewritten is hashed again. Known by this process's own commit
 * (`record`), or by hashing the file once (`check`, `verifyFile`; one hash
 * per digest at a time).
 */
import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { Digest } from '../lib/digest.js';
import { blobPath, type StorePaths } from '../store/paths.js';

interface Identity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

export type Verdict = 'ok' | 'mismatch' | 'missing';

const same = (a: Identity, st: Stats) => a.dev === st.dev && a.ino === st.ino && a.size === st.size && a.mtimeMs === st.mtimeMs;
const identity = (st: Stats): Identity => ({ dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });

export class VerifiedBlobs {
  private readonly known = new Map<string, Identity & { ok: boolean }>();
  private readonly hashing = new Map<string, Promise<boolean>>();
  /** Files hashed so far (for tests and logs). */
  hashed = 0;

  /** This process wrote the blob and knows whether it hashes to its name (its own hash of the body, no conversion). */
  record(digest: Digest, st: Stats, ok: boolean): void {
    this.known.set(digest.hex, { ...identity(st), ok });
  }

  /** Forget a digest (its blob is gone). */
  forget(digest: Digest): void {
    this.known.delete(digest.hex);
  }

  /** Known to hash to its name (without hashing anything). */
  knownGood(digest: Digest, st: Stats): boolean {
    const k = this.known.get(digest.hex);
    return k !== undefined && k.ok && same(k, st);
  }

  /** Does the open file hash to `digest`? Hashes it unless its identity is known. */
  async check(digest: Digest, fh: FileHandle, st: Stats): Promise<boolean> {
    const k = this.known.get(digest.hex);
    if (k && same(k, st)) return k.ok;
    let p = this.hashing.get(digest.hex);
    if (!p) {
      p = (async () => {
        const h = createHash('sha256');
        for await (const chunk of fh.createReadStream({ start: 0, autoClose: false, highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
        this.hashed++;
        const ok = h.digest('hex') === digest.hex;
        this.record(digest, st, ok);
        return ok;
      })().finally(() => this.hashing.delete(digest.hex));
      this.hashing.set(digest.hex, p);
      return p;
    }
    // Someone else is hashing this digest's file: take its verdict if it was this same file.
    await p.catch(() => {});
    const after = this.known.get(digest.hex);
    return after !== undefined && same(after, st) ? after.ok : this.check(digest, fh, st);
  }

  /** Open the committed blob (no symlink) and check it. */
  async verifyFile(paths: StorePaths, digest: Digest): Promise<Verdict> {
    let fh: FileHandle;
    try {
      fh = await open(blobPath(paths, digest), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch {
      this.forget(digest);
      return 'missing';
    }
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size <= 0) return 'missing';
      return (await this.check(digest, fh, st)) ? 'ok' : 'mismatch';
    } finally {
      await fh.close().catch(() => {});
    }
  }
}
