/**
 * Node/V8 flags every long-running fleetq worker runs with (bin/fleetq.js's
 * shebang, the npm scripts, the Dockerfile and the benchmarks use these).
 *
 * --max-semi-space-size=1: a download turns every 64 KiB socket read into a
 * short-lived Buffer; with V8's default young generation (up to 16 MiB
 * semi-spaces) they pile up as 60-75 MB of not-yet-collected memory during a
 * pull. A 1 MiB young generation is scavenged far more often: the 1 GiB cold
 * pull's peak RSS drops by ~35 MB at no measurable cost in pull time
 * (docs/BENCHMARKS.md).
 */
export const WORKER_NODE_FLAGS = ['--max-semi-space-size=1'] as const;
