/** Shared flags and plumbing for operator commands (hosts, jobs, retry, dlq, reroute, promote, clean, prewarm). */
import type { Command } from 'commander';
import { parseQueueKind, parseRegex, parseStates, type JobFilter, type UserState } from '../ops/job-filter.js';
import { Fleet, UnknownHostError } from '../ops/fleet.js';
import type { QueueKind } from '../queues/names.js';
import { cliConfig } from './context.js';
import { durationFlag } from './flags.js';
import { flagParser, positiveIntFlag, UsageError } from './usage-error.js';

export interface FilterFlags {
  host?: string;
  queue?: QueueKind;
  state?: UserState[];
  name?: string;
  reason?: RegExp;
  since?: number;
  limit?: number;
  json?: boolean;
}

export function addFilterFlags(cmd: Command, defaultState?: string): Command {
  return cmd
    .option('--host <ids>', 'host id(s), comma-separated (default: every registered host)')
    .option('--queue <images|restores>', 'only this queue kind', flagParser('--queue', (v) => parseQueueKind(v)))
    .option(`--state <states>`, `job states, comma-separated: failed, waiting, active, delayed, completed${defaultState ? ` (default ${defaultState})` : ''}`, flagParser('--state', (v) => parseStates(v)))
    .option('--name <name>', 'job name (ensure-image or restore)')
    .option('--reason <regex>', 'failed reason matches this regular expression (case-insensitive)', flagParser('--reason', (v) => parseRegex(v)))
    .option('--since <duration>', 'only jobs active within this long (a unit is required: 30m, 2h, 7d)', durationFlag('--since'))
    .option('--limit <n>', 'at most this many jobs', positiveIntFlag('--limit'))
    .option('--json', 'machine-readable output');
}

export function toFilter(f: FilterFlags): JobFilter {
  return { name: f.name, reason: f.reason, sinceTs: f.since !== undefined ? Date.now() - f.since : undefined };
}

export function hostList(v: string | undefined): string[] | undefined {
  return v ? v.split(',').map((x) => x.trim()).filter(Boolean) : undefined;
}

/** Open the fleet, run, close; an unknown host is bad input (exit 2), nothing touched. */
export async function withFleet<T>(fn: (fleet: Fleet) => Promise<T>): Promise<T> {
  const fleet = await Fleet.open(cliConfig());
  try {
    return await fn(fleet);
  } catch (err) {
    if (err instanceof UnknownHostError) throw new UsageError(err.message);
    throw err;
  } finally {
    await fleet.close();
  }
}
