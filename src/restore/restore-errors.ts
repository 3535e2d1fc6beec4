/** Errors only the restore path throws. */
import type { Digest } from '../lib/digest.js';
import { AppError, type AppErrorOptions, errorKind } from '../lib/errors.js';

/** cocoon exited non-zero, timed out or was killed. `permanent` comes from the failure table. */
export class CocoonError extends AppError {
  readonly code: `E_${string}`;
  readonly permanent: boolean;
  constructor(message: string, code: `E_${string}`, permanent: boolean, options?: AppErrorOptions) {
    super(message, options);
    this.code = code;
    this.permanent = permanent;
  }
}

/** cocoon exited 0 without printing the JSON it must print (e.g. a group's help text for an unknown subcommand). */
export class CocoonOutputError extends errorKind('E_COCOON_NO_RESULT', true) {}

/** The base blob a restore relies on is not on disk (gone again after its image job): retried. */
export class BlobMissingError extends errorKind('E_BLOB_MISSING', false) {}

/** The base image could not be had: its ensure-image job failed. */
export class BaseImageUnavailableError extends errorKind('E_BASE_IMAGE_UNAVAILABLE', true) {}

/** The job names a digest that the snapshot contradicts. */
export class BaseImageMismatchError extends errorKind('E_BASE_IMAGE_MISMATCH', true) {
  constructor(snapshot: string, recorded: Digest, job: Digest) {
    super(`snapshot ${snapshot} boots ${recorded} but the job pins ${job}; cocoon was not started (fix the job's --digest or use the snapshot made from that image)`);
  }
}

/** The snapshot's record cannot say which base it needs (or names one fleetq cannot ensure). */
export class SnapshotRecordError extends errorKind('E_SNAPSHOT_RECORD', true) {}

/** The snapshot's overlay is backed by a file outside this store: cocoon would boot from elsewhere. */
export class SnapshotBackingError extends errorKind('E_SNAPSHOT_BACKING', true) {}

/** The VM to restore is not running: cocoon would refuse, and fleetq leaves it untouched. */
export class VmNotRunningError extends errorKind('E_VM_NOT_RUNNING', true) {}

/** A VM of the clone's name exists but is not this job's finished clone. */
export class VmConflictError extends AppError {
  readonly code: `E_${string}`;
  readonly permanent = true;
  constructor(message: string, code: `E_${string}`) {
    super(message);
    this.code = code;
  }
}

/** A VM of the clone's name is still being created (maybe an orphaned clone of ours): retry later. */
export class CloneInProgressError extends errorKind('E_CLONE_IN_PROGRESS', false) {}

/** cocoon failed after killing the VM (`vm restore`): the VM is down; retrying cannot help until it is started. */
export class VmLeftDownError extends errorKind('E_VM_LEFT_DOWN', true) {}
