import type { Digest } from '../lib/digest.js';
import { AppError } from '../lib/errors.js';

/** The body can never become a blob (HTML, compressed, too small, too large). */
export class BodyRejectedError extends AppError {
  readonly code = 'E_BODY_REJECTED' as const;
  readonly permanent = true;
}

/** The downloaded bytes do not hash to the pinned digest. */
export class DigestMismatchError extends AppError {
  readonly code = 'E_DIGEST_MISMATCH' as const;
  readonly permanent = true;
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
export class ConversionError extends AppError {
  readonly code = 'E_CONVERT' as const;
  readonly permanent = false;
}

/** A blob the job relies on is not on disk. */
export class BlobMissingError extends AppError {
  readonly code = 'E_BLOB_MISSING' as const;
  readonly permanent = false;
}

/** The store's file system is full (ENOSPC/EDQUOT). Transient, but only once space is freed: retried late. */
export class StoreFullError extends AppError {
  readonly code = 'E_STORE_FULL' as const;
  readonly permanent = false;
  /** How many bytes the failed write needed (when known): pulls resume once that much is free. */
  needBytes?: number;
}

/** The store cannot be written at all (read-only file system, permissions). Permanent until an operator fixes it. */
export class StoreUnwritableError extends AppError {
  readonly code = 'E_STORE_UNWRITABLE' as const;
  readonly permanent = true;
}

/** images.json cannot be read as an index. Never overwritten while so; an unpinned pull cannot be decided. */
export class IndexCorruptError extends AppError {
  readonly code = 'E_INDEX_CORRUPT' as const;
  readonly permanent = true;
}

/**
 * Turn a file-system error on the store into what it means for a job:
 * a full disk, an unwritable store, or (anything else) the error itself.
 */
export function storeFsError(err: unknown, what: string): unknown {
  let code = (err as NodeJS.ErrnoException | undefined)?.code;
  // qemu-img reports it in its stderr, which ConversionError carries in its message.
  if (!code && err instanceof Error && /No space left on device|Disk quota exceeded/.test(err.message)) code = 'ENOSPC';
  if (code === 'ENOSPC' || code === 'EDQUOT') return new StoreFullError(`store is full while ${what} (${code}): free space in FLEETQ_ROOT; the job is retried later`, { cause: err });
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new StoreUnwritableError(`store is not writable while ${what} (${code}): check that FLEETQ_ROOT is mounted read-write and owned by the worker's user`, { cause: err });
  }
  return err;
}
