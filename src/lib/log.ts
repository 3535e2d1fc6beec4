/** The root pino logger. JSON to stdout; secrets redacted; errors under `err`. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { level: string; host?: string; name?: string }, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name: opts.name ?? 'fleetq',
      level: opts.level,
      base: { pid: process.pid, ...(opts.host ? { host: opts.host } : {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'redisUrl'],
        censor: '***',
      },
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  );
}
