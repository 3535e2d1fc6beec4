/**
 * Downloads in progress that the peer server streams to other hosts (issue
 * 13, "stream behind a peer that is still downloading", as Kraken's tracker
 * hands out incomplete peers).
 *
 * A download registers once its final size is known (a pinned digest with a
 * Content-Length). It holds its own read-only descriptor on the temp file, so
 * responses already open keep reading after the commit renames, converts or
 * unlinks the file; the descriptor is closed when the download is over and
 * the last response is done. `written` is the writer's watermark: bytes below
 * it are in the file. A response for bytes not written yet waits for them;
 * when the download is aborted every open response ends with an error (the
 * receiver sees a short body and resumes elsewhere).
 */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Digest } from '../lib/digest.js';
import type { BlobSource, OpenBlob } from './blob-source.js';

const READ_BYTES = 256 * 1024;

export type DownloadState = 'writing' | 'complete' | 'aborted';

export class InProgressDownload {
  private written = 0;
  private state: DownloadState = 'writing';
  private readers = 0;
  private closed = false;
  private wake: Array<() => void> = [];

  constructor(
    readonly digest: Digest,
    /** The final size (the source's declared length). */
    readonly size: number,
    private readonly file: FileHandle,
    private readonly onOver: (d: InProgressDownload) => void,
  ) {}

  get watermark(): number {
    return this.written;
  }

  get status(): DownloadState {
    return this.state;
  }

  /** The writer's file now holds `written` bytes. */
  advance(written: number): void {
    if (this.state !== 'writing' || written <= this.written) return;
    this.written = Math.min(written, this.size);
    this.notify();
  }

  /** Every byte is in the file (the commit went through). */
  complete(): void {
    this.finish('complete');
  }

  /** The download failed or restarts: open responses end short. */
  abort(): void {
    this.finish('aborted');
  }

  private finish(state: DownloadState): void {
    if (this.state !== 'writing') return;
    this.state = state;
    this.notify();
    this.onOver(this);
    this.maybeClose();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = [];
    for (const fn of wake) fn();
  }

  /** Resolves at the next change of watermark or state (or when `signal` fires). */
  changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.wake.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  read(buf: Buffer, position: number): Promise<{ bytesRead: number }> {
    return this.file.read(buf, 0, buf.length, position);
  }

  /** A response's view of the download (closed by the server when the response is over). */
  open(): OpenBlob {
    this.readers++;
    let released = false;
    return {
      size: this.size,
      kind: 'in-progress',
      stream: (start, end) => new WatermarkStream(this, start, end),
      close: async () => {
        if (released) return;
        released = true;
        this.readers--;
        this.maybeClose();
      },
    };
  }

  private maybeClose(): void {
    if (this.closed || this.state === 'writing' || this.readers > 0) return;
    this.closed = true;
    this.file.close().catch(() => {});
  }
}

/** Bytes start..end (inclusive) of a download, as they are written. */
class WatermarkStream extends Readable {
  private pos: number;
  private readonly stop = new AbortController();
  private reading = false;

  constructor(
    private readonly dl: InProgressDownload,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_BYTES });
    this.pos = start;
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    this.pump().catch((err: unknown) => this.destroy(err as Error));
  }

  private async pump(): Promise<void> {
    for (;;) {
      if (this.destroyed) return;
      if (this.pos > this.end) {
        this.reading = false;
        this.push(null);
        return;
      }
      if (this.dl.status === 'aborted') throw new Error(`the download of ${this.dl.digest.value} was aborted`);
      const available = Math.min(this.dl.watermark, this.end + 1) - this.pos;
      if (available > 0) {
        const buf = Buffer.allocUnsafe(Math.min(available, READ_BYTES));
        const { bytesRead } = await this.dl.read(buf, this.pos);
        if (bytesRead <= 0) throw new Error(`short read of ${this.dl.digest.value} at ${this.pos}`);
        this.pos += bytesRead;
        this.reading = false; // before push: it may ask for the next read at once
        this.push(buf.subarray(0, bytesRead));
        return;
      }
      if (this.dl.status === 'complete') throw new Error(`the download of ${this.dl.digest.value} ended at ${this.dl.watermark} bytes`);
      await this.dl.changed(this.stop.signal);
    }
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.stop.abort();
    cb(err);
  }
}

/** The downloads of this process that peers may stream, one per digest. */
export class InProgressDownloads {
  private readonly byHex = new Map<string, InProgressDownload>();

  /**
   * Register a download of `size` bytes read through `file` (which this
   * registry now owns and closes). Undefined when this process already
   * serves a download of the digest (the file is closed).
   */
  start(digest: Digest, size: number, file: FileHandle): InProgressDownload | undefined {
    if (this.byHex.has(digest.hex)) {
      file.close().catch(() => {});
      return undefined;
    }
    const dl = new InProgressDownload(digest, size, file, (d) => {
      if (this.byHex.get(d.digest.hex) === d) this.byHex.delete(d.digest.hex);
    });
    this.byHex.set(digest.hex, dl);
    return dl;
  }

  get(digest: Digest): InProgressDownload | undefined {
    return this.byHex.get(digest.hex);
  }

  get size(): number {
    return this.byHex.size;
  }

  source(): BlobSource {
    return {
      open: async (digest) => {
        const dl = this.byHex.get(digest.hex);
        return dl && dl.status !== 'aborted' ? dl.open() : undefined;
      },
    };
  }
}
