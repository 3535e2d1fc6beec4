/**
 * What the board serves about jobs: redacted (`redactDeep`) and size-capped.
 * A job field (data, return value, progress, options, failed reason, one
 * stack trace, the logs) larger than FIELD_CAP bytes of JSON is replaced:
 *   - values → `{ truncated: true, bytes, preview }` (the preview is the
 *     start of the *redacted* JSON);
 *   - strings the UI shows as text (failed reason, stack lines, log lines) →
 *     their head plus a "[truncated by fleetq: N bytes]" note;
 *   - logs → the newest lines that fit, after a note line.
 * So one page of /api/queues stays small whatever producers put in their
 * jobs (`fleetq jobs show` has everything, redacted).
 */
import { redactDeep } from '../lib/redact.js';

export const FIELD_CAP = 64 * 1024;
export const PREVIEW_CHARS = 2048;
/** Bull Board's UI offers at most 300 jobs per page; nothing bigger is served. */
export const MAX_JOBS_PER_PAGE = 300;

export interface Truncated {
  truncated: true;
  bytes: number;
  preview: string;
}

export function isTruncated(v: unknown): v is Truncated {
  return !!v && typeof v === 'object' && (v as Truncated).truncated === true && typeof (v as Truncated).bytes === 'number' && typeof (v as Truncated).preview === 'string';
}

/** Redacted copy of a job value, or a marker when its JSON is over `cap` bytes. */
export function capValue(value: unknown, cap = FIELD_CAP): unknown {
  if (value === undefined || value === null || isTruncated(value)) return value;
  const red = redactDeep(value);
  let json: string | undefined;
  try {
    json = JSON.stringify(red);
  } catch {
    return { truncated: true, bytes: 0, preview: '(not serializable)' } satisfies Truncated;
  }
  if (json === undefined || json.length <= cap / 4) return red; // cheap check first: a UTF-8 char is at most 4 bytes per UTF-16 unit
  const bytes = Buffer.byteLength(json);
  if (bytes <= cap) return red;
  return { truncated: true, bytes, preview: json.slice(0, PREVIEW_CHARS) } satisfies Truncated;
}

/** Redacted text, cut to its head with a note when over `cap` bytes. */
export function capText(s: unknown, cap = FIELD_CAP): unknown {
  if (typeof s !== 'string') return s === undefined || s === null ? s : capValue(s, cap);
  const red = String(redactDeep(s));
  if (red.length <= cap / 4) return red;
  const bytes = Buffer.byteLength(red);
  if (bytes <= cap) return red;
  return `${red.slice(0, PREVIEW_CHARS * 2)}… [truncated by fleetq: ${bytes} bytes]`;
}

/** Job logs: each line redacted and capped; the newest lines that fit in `cap` bytes, after a note. */
export function capLogs(lines: unknown, cap = FIELD_CAP): unknown {
  if (!Array.isArray(lines)) return capValue(lines, cap);
  const out: string[] = [];
  let total = 0;
  let i = lines.length - 1;
  for (; i >= 0; i--) {
    const line = String(capText(typeof lines[i] === 'string' ? lines[i] : JSON.stringify(lines[i])));
    const size = Buffer.byteLength(line) + 4;
    if (total + size > cap && out.length > 0) break;
    out.push(line);
    total += size;
  }
  out.reverse();
  if (i >= 0) out.unshift(`[fleetq: ${i + 1} earlier log line${i === 0 ? '' : 's'} not shown (over ${FIELD_CAP / 1024} KiB); \`fleetq jobs show <id>\` has them all]`);
  return out;
}

/** Stack traces, newest first: each capped, and only as many as fit in `cap` bytes. */
function capStack(stack: unknown, cap = FIELD_CAP): unknown {
  if (!Array.isArray(stack)) return capText(stack, cap);
  const out: unknown[] = [];
  let total = 0;
  for (const s of stack) {
    const line = capText(s, cap);
    total += typeof line === 'string' ? Buffer.byteLength(line) : 256;
    if (total > cap && out.length > 0) break;
    out.push(line);
  }
  return out;
}

const VALUE_FIELDS = new Set(['data', 'returnValue', 'returnvalue', 'progress', 'opts', 'template', 'jobData', 'ignoredChildFailureReasons']);
const TEXT_FIELDS = new Set(['failedReason', 'deferredFailure', 'name']);

/** A job as Bull Board formats it (list, detail, flow node, scheduler): its payload fields capped. */
export function capJob(job: unknown): unknown {
  if (!job || typeof job !== 'object' || Array.isArray(job)) return job;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(job)) {
    if (VALUE_FIELDS.has(k)) out[k] = capValue(v);
    else if (TEXT_FIELDS.has(k)) out[k] = capText(v);
    else if (k === 'stacktrace') out[k] = capStack(v);
    else if (k === 'children' && Array.isArray(v)) out[k] = v.map(capJob);
    else out[k] = typeof v === 'string' ? capText(v) : redactDeep(v);
  }
  return out;
}

/**
 * The board's `after` hook body rewrite: every route that carries job
 * payloads gets them capped; every body is passed through `redactDeep`.
 */
export function sanitizeResponseBody(route: string, body: unknown): unknown {
  if (!body || typeof body !== 'object') return typeof body === 'string' ? capText(body) : body;
  const b = body as Record<string, unknown>;
  // redactDeep(rest) never walks the (possibly huge) job payloads: capJob handles those.
  const without = (o: Record<string, unknown>, key: string) => {
    const { [key]: _omit, ...rest } = o;
    return redactDeep(rest) as Record<string, unknown>;
  };
  switch (route) {
    case '/api/queues':
      return {
        ...without(b, 'queues'),
        queues: Array.isArray(b.queues)
          ? b.queues.map((q: Record<string, unknown>) => ({ ...without(q, 'jobs'), jobs: Array.isArray(q.jobs) ? q.jobs.map(capJob) : q.jobs }))
          : b.queues,
      };
    case '/api/queues/:queueName/:jobId':
    case '/api/queues/:queueName/add':
      return { ...without(b, 'job'), job: capJob(b.job) };
    case '/api/queues/:queueName/:jobId/logs':
      return capLogs(body);
    case '/api/queues/:queueName/:jobId/flow':
      return { ...without(b, 'flowRoot'), flowRoot: capJob(b.flowRoot) };
    case '/api/job-schedulers':
      return { ...without(b, 'schedulers'), schedulers: Array.isArray(b.schedulers) ? b.schedulers.map(capJob) : b.schedulers };
    default:
      return redactDeep(body);
  }
}
