/**
 * One byte-rate budget shared by every response of the peer server: a token
 * bucket kept as a virtual clock (GCRA). `take(n)` resolves once n more bytes
 * fit under `rate` bytes/s, allowing a burst of `burst` bytes. Serving T bytes
 * in total therefore takes at least (T - burst) / rate seconds, however many
 * responses share it. Callers are served in the order they asked.
 */
export class RateLimiter {
  /** When (ms, performance.now) the bytes granted so far are paid for. */
  private paidUntil = 0;

  constructor(
    readonly rate: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(rate > 0)) throw new RangeError('rate must be positive');
  }

  /** Milliseconds to wait before `n` bytes may go; books them at once (so later callers queue behind). */
  reserve(n: number): number {
    const now = this.now();
    this.paidUntil = Math.max(this.paidUntil, now) + (n * 1000) / this.rate;
    return Math.max(0, this.paidUntil - now - (this.burst * 1000) / this.rate);
  }

  take(n: number, signal?: AbortSignal): Promise<void> {
    const wait = this.reserve(n);
    if (wait <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, Math.ceil(wait));
      function done() {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
