/**
 * Node/V8 flags every long-running fleetq worker runs with (bin/fleetq.js's
 * shebang, the npm scripts, the Dockerfile and the benchmarks use these).
 *
 * --max-semi-space-size=1: V8's young generation grows to 16 MiB semi-spaces
 * while a worker starts, and stays touched (~13 MB more idle RSS); a 1 MiB
 * one also collects a download's short-lived objects sooner. Plain-http
 * downloads no longer allocate per socket read (`fetch/read-ring.ts`), which
 * took the 512 MiB cold pull's peak from 159 to 151 MB without this flag,
 * but the first download also tiers undici's llhttp wasm parser up to
 * TurboFan (~35 MB of compiler memory, once per process), so without the
 * flag the peak is still just over the 150 MB goal; with it, 131 MB
 * (docs/BENCHMARKS.md, "Cold pull at the hashing limit").
 */
export const WORKER_NODE_FLAGS = ['--max-semi-space-size=1'] as const;
