/** Public API for producers that enqueue from code. */
export { loadConfig } from './config/load.js';
export { ConfigSchema, type Config } from './config/schema.js';
export { ENSURE_IMAGE, EnsureImagePayload, EnsureImageResult, type EnsureImageInput } from './jobs/contracts/ensure-image.js';
export { ImageUrl } from './jobs/contracts/common.js';
export { Digest } from './lib/digest.js';
export { enqueueEnsureImage, type Enqueued, type EnqueueOptions } from './queues/enqueue-ensure-image.js';
export { imageQueueName, restoreQueueName, queueName } from './queues/names.js';
export { decidePull, type PullDecision, type StoreView } from './policy/pull-policy.js';
export { RESTORE, RestorePayload, RestoreResult, type RestoreInput } from './jobs/contracts/restore.js';
export { enqueueRestore, type EnqueuedRestore, type RestoreEnqueueOptions } from './queues/enqueue-restore.js';
