/**
 * The root pino logger. One object per line on stdout (or human lines, see
 * below); errors under `err`; secrets redacted by construction, whatever a
 * call site passes:
 *   - every logged field goes through `redactDeep` (URLs in `url`, `image`,
 *     reasons, nested objects, object keys), errors through the `err`
 *     serializer with their message and stack redacted;
 *   - child bindings (`log.child({ image })`) likewise (serializers for
 *     `url`, `image`, `reason`…, and `child` itself redacts its bindings);
 *   - the message string, and an Error logged as the only argument;
 *   - fields named like credentials (`password`, `token`, `authorization`,
 *     `cookie`, `redisUrl`) are censored outright.
 *
 * No key appears twice in a line (Elasticsearch and others reject such
 * documents). pino itself would write a child's bindings and then the same
 * key again from the call (`log.child({ digest }).info({ digest }, …)`); here
 * a field already bound to the same value is dropped, and one bound to another
 * value is written as `<key>_2` (pino's own keys — level, time, pid, name,
 * and msg when a message is given — count as bound). Call sites are written
 * not to need that.
 *
 * Format (FLEETQ_LOG_FORMAT): `json`, `pretty` (human lines by pino-pretty,
 * formatted in this thread, synchronously: no transport worker thread), or
 * `auto` (pretty when stdout is a terminal, else json). Pretty lines are made
 * from the redacted JSON, so they are redacted too.
 */
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import { redactDeep, redactUrl } from './redact.js';

export type { Logger };

export type LogFormat = 'json' | 'pretty' | 'auto';

/** Redact a merge object's fields; Errors are left to the `err` serializer (pino keeps their message and stack). */
function redactFields(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k] = v instanceof Error ? v : redactDeep(v);
  return out;
}

/** pino's err serializer, then every string in it (message, stack, causes, own properties) redacted. */
function errSerializer(err: unknown): unknown {
  return redactDeep(pino.stdSerializers.err(err as Error));
}

const redactString = (v: unknown): unknown => redactDeep(v);

/** Keys pino writes into every line itself, besides the bindings (`msg` only when a message is given: see below). */
const CORE_KEYS = ['level', 'time', 'pid', 'hostname'];

/** What each logger (root or child) has bound: key → the JSON text of its value. Built once per logger, when it first logs. */
const boundCache = new WeakMap<object, Map<string, string>>();
function boundOf(logger: Logger): Map<string, string> {
  let bound = boundCache.get(logger);
  if (!bound) {
    bound = new Map<string, string>();
    for (const k of CORE_KEYS) bound.set(k, '\u0000'); // never equal to a logged value: renamed, not dropped
    for (const [k, v] of Object.entries(logger.bindings())) bound.set(k, JSON.stringify(v));
    boundCache.set(logger, bound);
  }
  return bound;
}

/**
 * `fields` without the keys `logger` already writes: equal values dropped, others renamed `<key>_2`, `<key>_3`…
 * `withMessage`: a message string follows, so a `msg` field would be written twice too.
 */
function withoutBound(logger: Logger, fields: Record<string, unknown>, withMessage = false): Record<string, unknown> {
  const bound = boundOf(logger);
  let out: Record<string, unknown> | undefined;
  for (const k of Object.keys(fields)) {
    const have = k === 'msg' && withMessage ? '\u0000' : bound.get(k);
    if (have === undefined || fields[k] === undefined) continue;
    out ??= { ...fields };
    delete out[k];
    const v = fields[k];
    if (have === safeJson(v)) continue;
    let n = 2;
    while (bound.has(`${k}_${n}`) || Object.hasOwn(out, `${k}_${n}`)) n++;
    out[`${k}_${n}`] = v;
  }
  return out ?? fields;
}

function safeJson(v: unknown): string | undefined {
  try {
    return JSON.stringify(redactDeep(v));
  } catch {
    return undefined;
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Error);

export interface LoggerOptions {
  level: string;
  host?: string;
  name?: string;
  /** FLEETQ_LOG_FORMAT (config logFormat); default auto. */
  format?: LogFormat | undefined;
  /** Colour pretty lines on a terminal (default true; NO_COLOR, config noColor, turns it off). */
  color?: boolean | undefined;
}

/** json or pretty, for this format and this stream (auto: pretty on a terminal). */
export function resolveLogFormat(format: LogFormat | undefined, stream: { isTTY?: boolean } = process.stdout): 'json' | 'pretty' {
  const f = format ?? 'auto';
  if (f === 'auto') return stream.isTTY ? 'pretty' : 'json';
  return f;
}

/**
 * Human lines on stdout: `[12:00:00.123] INFO: host job 42: image pulled {"digest":…}`.
 * pino-pretty is loaded only here (json workers never load it), and run as a
 * plain function on each line in this thread: a transport would start a worker
 * thread (a second V8 isolate, several MB of RSS) per process.
 */
function prettyDestination(colorize: boolean): pino.DestinationStream {
  const require = createRequire(import.meta.url);
  const { prettyFactory } = require('pino-pretty') as typeof import('pino-pretty');
  const prettify = prettyFactory({
    colorize,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    singleLine: true,
    ignore: 'pid,hostname,name,host,jobId',
    messageFormat: '{if host}{host} {end}{if jobId}job {jobId}: {end}{msg}',
  });
  const out = pino.destination({ dest: 1, sync: true });
  const stream = {
    write: (line: string) => void out.write(prettify(line)),
    flush: (cb?: (err?: Error) => void) => out.flush(cb),
    flushSync: () => out.flushSync(),
  };
  return stream;
}

export function createLogger(opts: LoggerOptions, destination?: pino.DestinationStream): Logger {
  const dest = destination ?? (resolveLogFormat(opts.format) === 'pretty' ? prettyDestination(Boolean(process.stdout.isTTY) && opts.color !== false) : undefined);
  const logger = pino(
    {
      name: opts.name ?? 'fleetq',
      level: opts.level,
      base: { pid: process.pid, ...(opts.host ? { host: opts.host } : {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          'password',
          '*.password',
          'token',
          '*.token',
          'authorization',
          '*.authorization',
          'headers.authorization',
          'headers.cookie',
          '*.headers.authorization',
          '*.headers.cookie',
          'redisUrl',
        ],
        censor: '***',
      },
      // Also applied to child bindings (where `formatters.log` does not run).
      serializers: { err: errSerializer, url: redactString, image: redactString, source: redactString, reason: redactString, failedReason: redactString },
      formatters: {
        bindings: (bindings) => redactFields(bindings),
        log: (obj) => redactFields(obj),
      },
      hooks: {
        logMethod(args, method) {
          // log.warn(err): pino would take err.message as the message, unredacted.
          if (args[0] instanceof Error && typeof args[1] !== 'string') {
            const err = args[0];
            return method.apply(this, [withoutBound(this, { err }), redactUrl(err.message), ...args.slice(1)] as unknown as Parameters<typeof method>);
          }
          if (isPlainObject(args[0])) (args as unknown[])[0] = withoutBound(this, args[0], typeof args[1] === 'string');
          for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') (args as unknown[])[i] = redactUrl(args[i] as string);
          return method.apply(this, args);
        },
      },
    },
    dest,
  );
  // pino runs `formatters.bindings` for the root only: redact every child's bindings here (children inherit this),
  // and bind no key the parent already writes.
  const child = logger.child;
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, withoutBound(this, redactFields(bindings), true), options);
  } as typeof logger.child;
  return logger;
}
