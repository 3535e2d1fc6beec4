/**
 * A MONITOR client that survives ioredis's start-up race. ioredis sends
 * MONITOR and switches the connection to monitoring mode one microtask after
 * the "+OK": a monitor line that arrives in the same socket read as the "+OK"
 * (another client's command at that moment) finds no pending command and
 * ioredis emits "Command queue state error" — an unhandled error event, or a
 * rejected `monitor()`. Seen in the full suite under load. So: our own error
 * listener for the client's whole life, and a fresh connection when the race
 * hits before monitoring started (nothing the test does has run yet then).
 */
import { Redis } from 'ioredis';

export async function startMonitor(url: string, attempts = 5): Promise<Redis> {
  for (let attempt = 1; ; attempt++) {
    const m = new Redis(url, { monitor: true, lazyConnect: false });
    try {
      await new Promise<void>((resolve, reject) => {
        m.once('monitoring', () => resolve());
        m.once('error', reject);
      });
      // Past the start: a lost line would now be a lost command, but the race only exists before "monitoring".
      m.on('error', () => {});
      return m;
    } catch (err) {
      m.disconnect();
      if (attempt >= attempts) throw err;
    }
  }
}
