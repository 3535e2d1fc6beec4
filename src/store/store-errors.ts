import type { Digest } from '../lib/digest.js';
import { AppError, errorKind } from '../lib/errors.js';

/** The body can never become a blob (HTML, compressed, too small, too large). */
export class BodyRejectedError extends errorKind('E_BODY_REJECTED', true) {}

/** The downloaded bytes do not hash to the pinned digest. */
export class DigestMismatchError extends errorKind('E_DIGEST_MISMATCH', true) {
  constructor(
    readonly expected: Digest,
    readonly actual: Digest,
    url: string,
  ) {
    super(
      `digest mismatch for ${url}: pinned ${expected} but upstream now serves ${actual}; ` +
        `the pinned image is not available from this URL (was the tag re-pushed? pin a digest URL or update the pin)`,
    );
  }
}

/** qemu-img could not convert the body. */
export class ConversionError extends errorKind('E_CONVERT', false) {}

/** The store's file system is full (ENOSPC/EDQUOT). Transient, but only once space is freed: retried late. */
export class StoreFullError extends errorKind('E_STORE_FULL', false) {
  /** How many bytes the failed write needed (when known): pulls resume once that much is free. */
  needBytes?: number;
}

/** The store cannot be written at all (read-only file system, permissions). Permanent until an operator fixes it. */
export class StoreUnwritableError extends errorKind('E_STORE_UNWRITABLE', true) {}

/** images.json cannot be read as an index. Never overwritten while so; an unpinned pull cannot be decided. */
export class IndexCorruptError extends errorKind('E_INDEX_CORRUPT', true) {}

/**
 * Turn a file-system error on the store into what it means for a job:
 * a full disk, an unwritable store, or (anything else) the error itself.
 */
export function storeFsError(err: unknown, what: string): unknown {
  let code = (err as NodeJS.ErrnoException | undefined)?.code;
  // qemu-img reports it in its stderr, which ConversionError carries in its message.
  if (!code && err instanceof Error && /No space left on device|Disk quota exceeded/.test(err.message)) code = 'ENOSPC';
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StoreFullError(`store is full while ${what} (${code}): free space on the store's file system; the job is retried later`, { cause: err, settings: ['root'] });
  }
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new StoreUnwritableError(`store is not writable while ${what} (${code}): check that the store root is mounted read-write and owned by the worker's user`, { cause: err, settings: ['root'] });
  }
  return err;
}
