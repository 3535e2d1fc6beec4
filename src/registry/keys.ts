/** Redis keys of the host registry, metrics snapshots and dead-letter store. Pure. */
export const registryKeys = (prefix: string) => ({
  /** ZSET host → last heartbeat (ms). */
  hosts: `${prefix}:hosts`,
  /** HASH instanceId → JSON WorkerAnnouncement, one per host. */
  host: (host: string) => `${prefix}:host:${host}`,
  /** STRING (JSON prom-client metrics) per worker instance, with a TTL. */
  metrics: (host: string, instance: string) => `${prefix}:metrics:${host}:${instance}`,
  metricsPattern: `${prefix}:metrics:*`,
  /** Dead letters: HASH id → JSON entry, ZSET id → failedAt. */
  dlqEntries: `${prefix}:dlq:entries`,
  dlqIndex: `${prefix}:dlq:index`,
});
