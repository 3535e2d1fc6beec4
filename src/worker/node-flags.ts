/**
 * Node/V8 flags every long-running fleetq worker runs with: bin/fleetq.js's
 * shebang, the npm scripts, the Dockerfile, docker-compose and the benchmarks
 * use this list (test/unit/config/compose.test.ts holds them to it).
 *
 * Empty: V8's defaults. `--max-semi-space-size=1` (used until issue 12) kept
 * the cold pull's peak RSS ~20 MB lower, but a 1 MiB young generation taxes
 * every allocation: a cache-hit job cost 136 µs of worker CPU with it against
 * 64 µs without (bare BullMQ no-op: 41–54 µs), i.e. half the throughput.
 * Without it, plain-http reads into reused buffers (`fetch/read-ring.ts`) and
 * bounded write batches keep a 512 MiB cold pull's peak at 148–156 MB
 * (docs/BENCHMARKS.md, "Issue 12: the worker flag").
 */
export const WORKER_NODE_FLAGS: readonly string[] = [];
