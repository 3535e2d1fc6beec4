/** Filters shared by `jobs ls`, `retry`, `reroute`…: parsing (with errors naming the flag) and matching. Pure. */
import type { QueueKind } from '../queues/names.js';

export const USER_STATES = ['failed', 'waiting', 'active', 'delayed', 'completed'] as const;
export type UserState = (typeof USER_STATES)[number];
export type BullState = 'failed' | 'wait' | 'active' | 'delayed' | 'completed' | 'prioritized' | 'waiting-children';

/** What BullMQ states a user-facing state covers ("waiting" includes prioritized and waiting-for-children). */
export function bullStates(s: UserState): BullState[] {
  return s === 'waiting' ? ['wait', 'prioritized', 'waiting-children'] : [s];
}

export function parseStates(v: string, flag = '--state'): UserState[] {
  const parts = v.split(',').map((x) => x.trim()).filter(Boolean);
  const bad = parts.filter((p) => !(USER_STATES as readonly string[]).includes(p));
  if (parts.length === 0 || bad.length) throw new Error(`${flag}: unknown state ${JSON.stringify(bad[0] ?? v)} (expected ${USER_STATES.join(', ')})`);
  return [...new Set(parts)] as UserState[];
}

export function parseQueueKind(v: string): QueueKind {
  if (v !== 'images' && v !== 'restores') throw new Error(`--queue: must be "images" or "restores" (got ${JSON.stringify(v)})`);
  return v;
}

export function parseRegex(v: string, flag = '--reason'): RegExp {
  try {
    return new RegExp(v, 'i');
  } catch (err) {
    throw new Error(`${flag}: not a valid regular expression: ${(err as Error).message}`);
  }
}

export interface JobFilter {
  name?: string | undefined;
  reason?: RegExp | undefined;
  /** Only jobs whose last activity is at or after this time (ms). */
  sinceTs?: number | undefined;
}

export interface JobLike {
  name: string;
  failedReason?: string;
  timestamp: number;
  processedOn?: number | undefined;
  finishedOn?: number | undefined;
}

export function lastActivity(j: JobLike): number {
  return j.finishedOn ?? j.processedOn ?? j.timestamp;
}

export function matches(j: JobLike, f: JobFilter): boolean {
  if (f.name !== undefined && j.name !== f.name) return false;
  if (f.reason && !f.reason.test(j.failedReason ?? '')) return false;
  if (f.sinceTs !== undefined && lastActivity(j) < f.sinceTs) return false;
  return true;
}
