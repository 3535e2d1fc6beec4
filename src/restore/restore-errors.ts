import { AppError } from '../lib/errors.js';

/** cocoon exited non-zero, timed out or was killed. `permanent` comes from the failure table. */
export class CocoonError extends AppError {
  readonly code: `E_${string}`;
  readonly permanent: boolean;
  constructor(message: string, code: `E_${string}`, permanent: boolean, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.permanent = permanent;
  }
}

/** The base image could not be had: the ensure-image child failed. */
export class BaseImageUnavailableError extends AppError {
  readonly code = 'E_BASE_IMAGE_UNAVAILABLE' as const;
  readonly permanent = true;
}
