/**
 * The store owns ingestion, like containerd's content Writer: a BlobWriter
 * takes the bytes (`write`), hashing, capping and inspecting them as they
 * come, and `commit` turns them into a blob — verify the digest, prove the
 * format safe, convert with an explicit format, re-check the result, fsync,
 * chmod, and then, in ONE section under cocoon's `db/images.lock`, rename into
 * `blobs/` and record the index entry. Nothing half-written is ever visible:
 * until then everything lives in `temp/pull-*`, and `abort` removes it.
 *
 * No path leaves this module: callers hand in bytes and get a BlobInfo back.
 */
import { createHash, type Hash } from 'node:crypto';
import { chmod, type FileHandle, open, rename, stat } from 'node:fs/promises';
import { Digest } from '../lib/digest.js';
import { redactUrl } from '../lib/redact.js';
import { formatBytes } from '../lib/units.js';
import { type BlobInfo, newTempPath, statBlob } from './blob-store.js';
import { convertToQcow2, verifyFinalQcow2 } from './convert.js';
import { fsyncDir, removeIfExists } from './fs-atomic.js';
import { HEAD_BYTES, type ImageFormat, inspectImageHead } from './image-format.js';
import { pinnedRef, readIndex, referencesDigest, setUrlEntry, withIndexLock, writeIndex } from './image-index.js';
import { blobPath, type StorePaths } from './paths.js';
import { BodyRejectedError, DigestMismatchError, IndexCorruptError, StoreFullError, storeFsError as fsError } from './store-errors.js';

export interface BlobWriterOptions {
  /** Where the bytes come from (a URL), for messages; redacted here. */
  source: string;
  maxBytes: number;
  /** The digest the bytes must hash to (a pinned job). */
  expectDigest?: Digest | undefined;
  qemuImg: string;
  signal?: AbortSignal | undefined;
}

export interface CommitOptions {
  /** The index key to point at the blob (the URL it was pulled from). */
  ref: string;
  /**
   * Asked inside the images.lock section: may `ref` be re-pointed? False when
   * the pull lock was lost (a newer leader may have recorded a newer digest):
   * the blob is still committed and kept referenced under `<ref>#<digest>`.
   */
  fence?: (() => Promise<boolean>) | undefined;
}

export interface Committed {
  blob: BlobInfo;
  /** Bytes received (before any conversion). */
  bytes: number;
  /** How the blob is referenced in images.json: by its URL, by `<url>#<digest>` only, or not at all (index unreadable). */
  indexed: 'url' | 'pinned-ref' | 'none';
  /**
   * The blob file is the body as received (no conversion, and this writer's
   * file is the one renamed into blobs/), so it hashes to its name: it may be
   * served to peers. False for a converted body, or when a blob was already there.
   */
  asReceived: boolean;
  /** The body was converted to qcow2 (raw, or a qcow2 not kept as is): the blob does not hash to its name. */
  converted: boolean;
  /** Set when `indexed` is "none": why, and how to repair. */
  warning?: string | undefined;
}

/**
 * Bytes gathered before one `writev`. While it runs on libuv's thread pool the
 * next batch is received and hashed (at most one write in flight, so at most
 * two batches are held).
 */
const WRITE_BATCH = 1024 * 1024;
/**
 * Start the page cache's write-back this often (an `fdatasync` in the
 * background, one at a time), so that the commit's final fsync finds little
 * left to write instead of the whole body.
 */
const SYNC_EVERY = 64 * 1024 * 1024;

export class BlobWriter {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  private head: Buffer[] = [];
  private headLength = 0;
  private format: ImageFormat | undefined;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  /** The write in flight (at most one); it never rejects: its error is kept in `failed`. */
  private inflight: Promise<void> | undefined;
  /** The background write-back in flight, if any (never rejects either). */
  private syncing: Promise<void> | undefined;
  private written = 0;
  private syncedAt = 0;
  private failed: unknown;
  /**
   * Called after each write with the batch's last chunk: every chunk before it
   * is hashed and on disk, so the caller may reuse their memory (the last one
   * may share a read buffer with bytes not written yet).
   */
  onWritten: ((last: Buffer) => void) | undefined;
  /**
   * Called after each write reaches the file, with the bytes in the file so
   * far (the watermark a reader of the temp file may read up to: peers
   * streaming a download in progress, see `openReader`).
   */
  onFlushed: ((written: number) => void) | undefined;
  private declared: number | null = null;
  private fh: FileHandle | undefined;
  private done = false;
  private readonly shown: string;

  private constructor(
    private readonly paths: StorePaths,
    private readonly opts: BlobWriterOptions,
    private readonly tempPath: string,
    fh: FileHandle,
  ) {
    this.fh = fh;
    this.shown = redactUrl(opts.source);
  }

  /** A file-system error, told what this body needs when the disk is full. */
  private fsError(err: unknown, what: string): unknown {
    const e = fsError(err, what);
    if (e instanceof StoreFullError) e.needBytes = Math.max(this.declared ?? 0, this.bytes) * (this.format?.kind === 'qcow2' && !this.format.needsConversion ? 1 : 2);
    return e;
  }

  /** Open a fresh `temp/pull-*` file (0600). */
  static async create(paths: StorePaths, opts: BlobWriterOptions): Promise<BlobWriter> {
    const tempPath = newTempPath(paths);
    try {
      return new BlobWriter(paths, opts, tempPath, await open(tempPath, 'wx', 0o600));
    } catch (err) {
      throw fsError(err, `creating ${tempPath}`);
    }
  }

  /** Bytes taken by `write` so far (all hashed): where a resumed download continues (`Range: bytes=<received>-`). */
  get received(): number {
    return this.bytes;
  }

  /** Bytes in the temp file so far (never more than `received`). */
  get flushed(): number {
    return this.written;
  }

  /**
   * A read-only handle on the temp file, for serving the download while it is
   * in progress: it stays readable after the commit renames, converts or
   * unlinks the file, until the caller closes it. Only bytes below `flushed`
   * are meaningful.
   */
  async openReader(): Promise<FileHandle> {
    if (this.done || !this.fh) throw new Error('the download is finished');
    return open(this.tempPath, 'r');
  }

  /** The length the source announced (Content-Length): refused up front when over the cap. */
  expectLength(declared: number | null): void {
    this.declared = declared;
    if (declared !== null && declared > this.opts.maxBytes) {
      throw new BodyRejectedError(`image at ${this.shown} is ${formatBytes(declared)}, over the ${formatBytes(this.opts.maxBytes)} cap`, { settings: ['maxImageSize'] });
    }
  }

  async write(chunk: Buffer): Promise<void> {
    this.bytes += chunk.length;
    if (this.bytes > this.opts.maxBytes) {
      throw new BodyRejectedError(`image at ${this.shown} exceeds the ${formatBytes(this.opts.maxBytes)} cap`, { settings: ['maxImageSize'] });
    }
    if (!this.format) {
      // A copy: the chunk's memory may be reused once it is written (onWritten).
      this.head.push(Buffer.from(chunk.subarray(0, HEAD_BYTES - this.headLength)));
      this.headLength += Math.min(chunk.length, HEAD_BYTES - this.headLength);
      // Refuse junk as soon as its first bytes are in, not after gigabytes.
      if (this.headLength >= HEAD_BYTES) this.inspect(Math.max(this.bytes, this.declared ?? 0));
    }
    this.hash.update(chunk);
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    if (this.pendingLength >= WRITE_BATCH) {
      // Wait for the previous batch only (receive and hash the next one while this one is written).
      if (this.inflight) await this.inflight;
      this.throwIfFailed();
      this.inflight = this.startWrite();
    }
  }

  private throwIfFailed(): void {
    if (this.failed !== undefined) throw this.failed;
  }

  private inspect(total: number): ImageFormat {
    if (!this.format) {
      const head = Buffer.concat(this.head, this.headLength).subarray(0, HEAD_BYTES);
      this.head = [];
      this.format = inspectImageHead(head, total);
    }
    if (this.format.kind === 'rejected') throw new BodyRejectedError(`rejected body from ${this.shown}: ${this.format.reason}`);
    return this.format;
  }

  /** Write the pending batch; errors are kept in `failed` (thrown by the next write or the commit). */
  private async startWrite(): Promise<void> {
    const bufs = this.pending;
    const n = this.pendingLength;
    this.pending = [];
    this.pendingLength = 0;
    try {
      await this.fh!.writev(bufs);
      this.written += n;
      this.onWritten?.(bufs[bufs.length - 1]!);
      this.onFlushed?.(this.written);
    } catch (err) {
      this.failed ??= this.fsError(err, `writing ${this.tempPath}`);
      return;
    }
    if (!this.syncing && this.written - this.syncedAt >= SYNC_EVERY) {
      this.syncedAt = this.written;
      const fh = this.fh!;
      this.syncing = fh.datasync().then(
        () => (this.syncing = undefined),
        (err: unknown) => {
          this.syncing = undefined;
          this.failed ??= this.fsError(err, `syncing ${this.tempPath}`);
        },
      );
    }
  }

  /** Everything received is written (and no write-back is running): the file handle is ours again. */
  private async flush(): Promise<void> {
    if (this.inflight) await this.inflight;
    this.inflight = undefined;
    this.throwIfFailed();
    if (this.pendingLength > 0) await this.startWrite();
    if (this.syncing) await this.syncing;
    this.throwIfFailed();
  }

  /** Verify, prove safe, convert, re-check, then rename + index entry under images.lock. */
  async commit(c: CommitOptions): Promise<Committed> {
    const signal = this.opts.signal;
    const converted = `${this.tempPath}.qcow2`;
    try {
      await this.flush();
      try {
        await this.fh!.sync();
        await this.fh!.close();
      } catch (err) {
        throw this.fsError(err, `syncing ${this.tempPath}`);
      } finally {
        this.fh = undefined;
      }
      const format = this.inspect(this.bytes);
      const digest = Digest.fromHex(this.hash.digest('hex'))!;
      if (this.opts.expectDigest && !digest.equals(this.opts.expectDigest)) throw new DigestMismatchError(this.opts.expectDigest, digest, this.shown);

      let source = this.tempPath;
      const converting = format.kind !== 'rejected' && format.needsConversion;
      if (converting) {
        // Explicit -f: qemu never probes a format, and a qcow2 gets here only with a clean header.
        await convertToQcow2(this.opts.qemuImg, this.tempPath, converted, format.kind, signal).catch((err) => {
          throw this.fsError(err, 'converting the image');
        });
        await removeIfExists(this.tempPath);
        source = converted;
      }
      await verifyFinalQcow2(this.opts.qemuImg, source, signal);
      signal?.throwIfAborted();
      try {
        await chmod(source, 0o444);
      } catch (err) {
        throw this.fsError(err, `chmod ${source}`);
      }
      const result = await withIndexLock(this.paths, () => this.install(source, digest, c, !converting));
      this.done = true;
      return result;
    } catch (err) {
      await this.abort();
      await removeIfExists(converted).catch(() => {});
      throw err;
    }
  }

  /** The critical section: blob into blobs/ and its index entry together (cocoon's own order, §9). */
  private async install(source: string, digest: Digest, c: CommitOptions, unconverted: boolean): Promise<Committed> {
    const target = blobPath(this.paths, digest);
    let blob = await statBlob(this.paths, digest);
    const asReceived = unconverted && !blob;
    try {
      if (blob) {
        await removeIfExists(source);
      } else {
        await rename(source, target);
        await fsyncDir(this.paths.blobs);
        blob = { digest, path: target, size: (await stat(target)).size };
      }
    } catch (err) {
      throw this.fsError(err, `committing ${target}`);
    }
    let index;
    try {
      index = await readIndex(this.paths);
    } catch (err) {
      if (!(err instanceof IndexCorruptError)) throw this.fsError(err, `reading ${this.paths.index}`);
      // Never overwrite an index we cannot read: the blob stays, unindexed, and the job says so.
      return { blob, bytes: this.bytes, asReceived, converted: !unconverted, indexed: 'none', warning: `${err.message}; ${digest} is committed but not indexed, so \`cocoon gc\` may delete it until the index is repaired` };
    }
    let indexed: Committed['indexed'];
    if (!c.fence || (await c.fence())) {
      setUrlEntry(index, c.ref, digest, blob.size);
      indexed = 'url';
    } else {
      // Lost the pull lock: a newer leader may own the URL's entry now. Keep the blob referenced, leave the URL alone.
      if (!referencesDigest(index, digest)) {
        const ref = pinnedRef(c.ref, digest);
        index.images[ref] = { ref, content_sum: digest, size: blob.size, created_at: new Date().toISOString() };
      }
      indexed = 'pinned-ref';
    }
    try {
      await writeIndex(this.paths, index);
    } catch (err) {
      throw this.fsError(err, `writing ${this.paths.index}`);
    }
    return { blob, bytes: this.bytes, asReceived, converted: !unconverted, indexed };
  }

  /** Drop everything written so far (idempotent; a no-op after a commit). */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    // Never close the handle under a write or a write-back still running on the thread pool.
    await this.inflight;
    await this.syncing;
    await this.fh?.close().catch(() => {});
    this.fh = undefined;
    await removeIfExists(this.tempPath).catch(() => {});
  }
}
