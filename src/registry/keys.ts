/** Redis keys of the host registry, metrics snapshots and dead-letter store, all under `<prefix>:`. Pure. */
export const registryKeys = (prefix: string) => ({
  /** ZSET host → last heartbeat (ms). Hosts silent for FLEETQ_HOST_RETENTION are dropped (host-registry.ts). */
  hosts: `${prefix}:hosts`,
  /** HASH instanceId → JSON WorkerAnnouncement, one per host. */
  host: (host: string) => `${prefix}:host:${host}`,
  /** HASH snapshot name (and `#<ID>`) → JSON entry, `:meta` → listing meta: what the host's cocoon has (placement/snapshot-catalog.ts), with a TTL. */
  snapshotCatalog: (host: string) => `${prefix}:snapshots:${host}`,
  /** STRING (JSON prom-client metrics) per worker instance, with a TTL. */
  metrics: (host: string, instance: string) => `${prefix}:metrics:${host}:${instance}`,
  metricsPattern: `${prefix}:metrics:*`,
  /** SCAN pattern for one host's metrics snapshots (host ids hold no glob characters). */
  hostMetricsPattern: (host: string) => `${prefix}:metrics:${host}:*`,
  /** Dead letters: HASH id → JSON entry, ZSET id → failedAt. Entries older than FLEETQ_DLQ_MAX_AGE are dropped. */
  dlqEntries: `${prefix}:dlq:entries`,
  dlqIndex: `${prefix}:dlq:index`,
  /** HASH queue name → ms: the dead-letter sweep's watermark per queue (worker/dead-letter-recorder.ts). */
  dlqSwept: `${prefix}:dlq:swept`,
});
