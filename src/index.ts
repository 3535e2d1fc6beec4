/**
 * Public API for producers that enqueue from code (README "From code",
 * docs/JOBS.md): the enqueue helpers, the job contracts and their types, the
 * queue names, the Digest a parsed payload or result carries, the errors a
 * producer may meet, the configuration loader, and the Redis connection
 * factory (a single Redis, Sentinel or Cluster, from the same settings as
 * fleetq's own processes: `openRedis(loadConfig(), 'service')`). Worker internals (pull
 * policy, store, locks) are not part of it.
 */
export { loadConfig } from './config/load.js';
export { ConfigSchema, type Config } from './config/schema.js';
export { ENSURE_IMAGE, EnsureImagePayload, EnsureImageResult, PullProgress, type EnsureImageInput } from './jobs/contracts/ensure-image.js';
export { RESTORE, RestorePayload, RestoreResult, type RestoreInput } from './jobs/contracts/restore.js';
export { ImageUrl } from './jobs/contracts/common.js';
export { Digest } from './lib/digest.js';
export { AppError, ConfigError, InvalidInputError } from './lib/errors.js';
export { enqueueEnsureImage, type Enqueued, type EnqueueOptions } from './queues/enqueue-ensure-image.js';
export { enqueueRestore, type EnqueuedRestore, type RestoreEnqueueOptions } from './queues/enqueue-restore.js';
export { ensureImageDedupId, imageQueueName, queueName, restoreQueueName } from './queues/names.js';
export { connectRedis, openRedis, waitReady, type RedisClient, type RedisRole } from './redis/connect.js';
