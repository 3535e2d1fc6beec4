import { AppError } from '../lib/errors.js';

/** The Redis lock expired or was taken over while we held it; the work was aborted. Transient. */
export class LockLostError extends AppError {
  readonly code = 'E_LOCK_LOST' as const;
  readonly permanent = false;
}
