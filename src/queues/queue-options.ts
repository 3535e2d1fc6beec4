/**
 * Options for every BullMQ `Queue` fleetq opens. BullMQ keeps one events
 * stream per queue (`<prefix>:<queue>:events`) and trims it on every write to
 * about `opts.maxLenEvents` entries, a value each `Queue` writes into the
 * queue's meta hash when it starts (Workers take theirs from there; BullMQ 6
 * has no Worker option for it). Every fleetq Queue sets the same bound, the
 * BullMQ default, so that fleetq's queues and raw producers that keep the
 * default (docs/JOBS.md) agree instead of rewriting each other's value.
 */
import type { QueueOptions } from 'bullmq';

/** Approximate maximum length of each queue's events stream (Redis `XADD … MAXLEN ~`). */
export const EVENTS_MAX_LEN = 10_000;

/** `new Queue(name, { connection, ...queueOptions(cfg.prefix) })`. */
export function queueOptions(prefix: string, eventsMaxLen = EVENTS_MAX_LEN): Pick<QueueOptions, 'prefix' | 'streams'> {
  return { prefix, streams: { events: { maxLen: eventsMaxLen } } };
}
