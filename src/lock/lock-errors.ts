import { AppError, errorKind } from '../lib/errors.js';

/** The Redis lock expired or was taken over while we held it; the work was aborted. Transient. */
export class LockLostError extends errorKind('E_LOCK_LOST', false) {}
