/**
 * Redis keys of the host registry, the metrics snapshots and the dead-letter
 * store, all under `<prefix>:`, each with a Redis Cluster hash tag chosen by
 * what is used together (docs/ARCHITECTURE.md, "Redis keys"; the patterns:
 * redis/key-patterns.ts). Pure.
 *   - `{registry}`: fleet-wide records that one MULTI or script touches
 *     together (a worker's announcement and the hosts zset; dropping a host).
 *     One slot for the whole fleet: small, written once per heartbeat per
 *     worker.
 *   - `{<host>}`: what belongs to one host, in the slot of its queues
 *     (`images-{<host>}`, `restores-{<host>}`): dead letters (recorded in one
 *     script with the failed job's own hash and its queue's failed set),
 *     their sweep watermarks, metrics snapshots. Hosts spread over the
 *     cluster's masters, and a host's keys live and fail over with its queues.
 * No fleetq key is found by SCAN or KEYS (on a Cluster those go to one
 * random node): readers start from the registry.
 */

export const registryKeys = (prefix: string) => ({
  /** ZSET host → last heartbeat (ms). Hosts silent for FLEETQ_HOST_RETENTION are dropped (host-registry.ts). */
  hosts: `${prefix}:{registry}:hosts`,
  /** HASH instanceId → JSON WorkerAnnouncement, one per host. */
  host: (host: string) => `${prefix}:{registry}:host:${host}`,
  /** SET of hosts that have (or had) dead letters: where `fleetq dlq` and the retention look. */
  dlqHosts: `${prefix}:{registry}:dlq-hosts`,
});

/** One host's keys: the slot of its queues (hash tag `{<host>}`, as in `images-{<host>}`). */
export const hostKeys = (prefix: string, host: string) => ({
  /** STRING (JSON prom-client metrics) per worker instance, with a TTL. */
  metrics: (instance: string) => `${prefix}:{${host}}:metrics:${instance}`,
  /** ZSET instance → last push (ms): which snapshots exist (read without SCAN; pruned by the writer). */
  metricsIndex: `${prefix}:{${host}}:metrics`,
  /** Dead letters: HASH id → JSON entry, ZSET id → failedAt. Entries older than FLEETQ_DLQ_MAX_AGE are dropped. */
  dlqEntries: `${prefix}:{${host}}:dlq:entries`,
  dlqIndex: `${prefix}:{${host}}:dlq:index`,
  /** HASH queue name → ms: the dead-letter sweep's watermark per queue (worker/dead-letter-recorder.ts). */
  dlqSwept: `${prefix}:{${host}}:dlq:swept`,
});

/**
 * Keys of the fleet-wide peer features (issue 13), planned with their tags:
 *   - `holders(hex)`: HASH host → JSON, who holds a digest; tag `{<hex>}`, the
 *     slot of that digest's back-to-source semaphore, so one script may read
 *     both;
 *   - `b2sLockKey(hex)`: the redis-semaphore key of the fleet-wide
 *     back-to-source limit, relative to the mutex client (keyPrefix
 *     `<prefix>:`; redis-semaphore prepends `semaphore:`): stored as
 *     `<prefix>:semaphore:b2s:{<hex>}`;
 *   - `peerLoad`: HASH host → transfers in flight, next to the registry
 *     (placement reads both);
 *   - `holdersChanged(hex)`: a pub/sub channel (classic PUBLISH: no slot).
 */
export const peerKeys = (prefix: string) => ({
  holders: (hex: string) => `${prefix}:holders:{${hex}}`,
  b2sLockKey: (hex: string) => `b2s:{${hex}}`,
  peerLoad: `${prefix}:{registry}:peer-load`,
  holdersChanged: (hex: string) => `${prefix}:holders-changed:${hex}`,
});

/**
 * The keys fleetq ≤ 0.1 (before the Cluster layout) used for the same data:
 * read only by `fleetq migrate` (queues/migrate-keys.ts), which moves them.
 */
export const legacyRegistryKeys = (prefix: string) => ({
  hosts: `${prefix}:hosts`,
  host: (host: string) => `${prefix}:host:${host}`,
  metricsPattern: `${prefix}:metrics:*`,
  dlqEntries: `${prefix}:dlq:entries`,
  dlqIndex: `${prefix}:dlq:index`,
  dlqSwept: `${prefix}:dlq:swept`,
});
