/**
 * The root pino logger. JSON to stdout; errors under `err`; secrets redacted
 * by construction, whatever a call site passes:
 *   - every logged field goes through `redactDeep` (URLs in `url`, `image`,
 *     reasons, nested objects, object keys), errors through the `err`
 *     serializer with their message and stack redacted;
 *   - child bindings (`log.child({ image })`) likewise (serializers for
 *     `url`, `image`, `reason`…, and `child` itself redacts its bindings);
 *   - the message string, and an Error logged as the only argument;
 *   - fields named like credentials (`password`, `token`, `authorization`,
 *     `cookie`, `redisUrl`) are censored outright.
 */
import { pino, type Logger } from 'pino';
import { redactDeep, redactUrl } from './redact.js';

export type { Logger };

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

export function createLogger(opts: { level: string; host?: string; name?: string }, destination?: pino.DestinationStream): Logger {
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
            return method.apply(this, [{ err }, redactUrl(err.message), ...args.slice(1)] as unknown as Parameters<typeof method>);
          }
          for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') (args as unknown[])[i] = redactUrl(args[i] as string);
          return method.apply(this, args);
        },
      },
    },
    destination,
  );
  // pino runs `formatters.bindings` for the root only: redact every child's bindings here (children inherit this).
  const child = logger.child;
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, redactFields(bindings), options);
  } as typeof logger.child;
  return logger;
}
