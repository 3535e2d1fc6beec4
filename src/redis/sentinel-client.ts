/**
 * An ioredis client for a Sentinel group that does not stay down after a
 * failover.
 *
 * ioredis 5.11 can end a Sentinel client for good: when the connector's
 * connect() rejects (SentinelConnector throws "Connection is closed." when a
 * disconnect — e.g. the failoverDetector's, on +switch-master — reset it
 * during its asynchronous asking of the sentinels), Redis#connect sets the
 * status to "end" without consulting retryStrategy. Nothing reconnects it.
 *
 * A `RevivingSentinelRedis` remembers whether it was closed on purpose
 * (disconnect() / quit()) and, when it reaches "end" otherwise, connects again
 * after a short delay (100 ms × tries, at most 2 s; at most
 * `REVIVE_MAX_TRIES` in a row without becoming ready, then it stays ended and
 * says so with an 'error'). Each revival is announced as an 'error' event
 * (the clients' owners log those) and a 'revive' event. duplicate() returns
 * the same class, so BullMQ's duplicated connections (blocking Worker
 * connections, QueueEvents) are covered too.
 */
import { Redis, type RedisOptions } from 'ioredis';

export const REVIVE_MAX_TRIES = 50;
export const reviveDelayMs = (tries: number): number => Math.min(100 * tries, 2_000);

export class RevivingSentinelRedis extends Redis {
  /** disconnect() or quit() was called: an 'end' is wanted. */
  private closedOnPurpose = false;
  private reviveTries = 0;
  private reviveTimer: NodeJS.Timeout | undefined;
  /** Revivals so far (for tests and diagnostics). */
  revivals = 0;

  constructor(options: RedisOptions) {
    super(options);
    this.on('ready', () => {
      this.reviveTries = 0;
    });
    this.on('end', () => this.reviveUnlessClosed());
  }

  private reviveUnlessClosed(): void {
    if (this.closedOnPurpose || this.reviveTimer) return;
    if (this.reviveTries >= REVIVE_MAX_TRIES) {
      this.announce(new Error(`Sentinel client for "${String(this.options.name)}" ended; gave up reconnecting after ${REVIVE_MAX_TRIES} tries`));
      return;
    }
    this.reviveTries++;
    const delay = reviveDelayMs(this.reviveTries);
    this.announce(new Error(`Sentinel client for "${String(this.options.name)}" ended without being closed (ioredis gives up after a failover); reconnecting in ${delay} ms (try ${this.reviveTries})`));
    this.reviveTimer = setTimeout(() => {
      this.reviveTimer = undefined;
      if (this.closedOnPurpose || this.status !== 'end') return;
      this.revivals++;
      this.emit('revive', this.reviveTries);
      // A failure ends in 'end' again (and another try) or in 'error' events: nothing to handle here.
      this.connect().catch(() => {});
    }, delay);
    this.reviveTimer.unref?.();
  }

  private announce(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  override disconnect(reconnect = false): void {
    if (!reconnect) {
      this.closedOnPurpose = true;
      if (this.reviveTimer) clearTimeout(this.reviveTimer);
      this.reviveTimer = undefined;
    }
    super.disconnect(reconnect);
  }

  override quit(...args: any[]): any {
    this.closedOnPurpose = true;
    if (this.reviveTimer) clearTimeout(this.reviveTimer);
    this.reviveTimer = undefined;
    return (super.quit as (...a: any[]) => any)(...args);
  }

  override connect(callback?: () => void): Promise<void> {
    // connect() after a deliberate close opens the client again: it is wanted once more.
    this.closedOnPurpose = false;
    return super.connect(callback);
  }

  override duplicate(override?: Partial<RedisOptions>): RevivingSentinelRedis {
    return new RevivingSentinelRedis({ ...this.options, ...override });
  }
}
