/**
 * Waits for "lock released" messages on Redis pub/sub, sharing one subscriber
 * connection per process and reference-counting channel subscriptions.
 */
import type { RedisClient } from '../redis/connect.js';

export interface ReleaseWaiter {
  /** Resolves once the subscription is active (so no release can be missed after this). */
  ready: Promise<void>;
  /** Resolves on the next release message. */
  released: Promise<void>;
  cancel(): void;
}

export class ReleaseNotifier {
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly subscriptions = new Map<string, Promise<unknown>>();

  constructor(private readonly subscriber: RedisClient) {
    subscriber.on('message', (channel: string) => {
      const set = this.listeners.get(channel);
      if (set) for (const fn of [...set]) fn();
    });
  }

  wait(channel: string): ReleaseWaiter {
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      this.subscriptions.set(channel, this.subscriber.subscribe(channel));
    }
    const listeners = set;
    let resolve!: () => void;
    const released = new Promise<void>((r) => (resolve = r));
    const fire = () => resolve();
    listeners.add(fire);
    const cancel = () => {
      listeners.delete(fire);
      if (listeners.size === 0 && this.listeners.get(channel) === listeners) {
        this.listeners.delete(channel);
        this.subscriptions.delete(channel);
        this.subscriber.unsubscribe(channel).catch(() => {});
      }
    };
    const ready = (this.subscriptions.get(channel) ?? Promise.resolve()).then(() => undefined);
    return { ready, released, cancel };
  }

  async publish(publisher: RedisClient, channel: string): Promise<void> {
    await publisher.publish(channel, '1');
  }
}
