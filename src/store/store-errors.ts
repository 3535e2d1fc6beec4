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
    readonly expected: string,
    readonly actual: string,
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
