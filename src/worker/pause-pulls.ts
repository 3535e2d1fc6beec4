/**
 * Disk full: stop taking pull jobs (restores of present images go on), probe
 * the store every `everyMs`, and resume once a probe write succeeds.
 */
import type { Worker } from 'bullmq';
import type { Logger } from 'pino';
import type { StorePaths } from '../store/paths.js';
import { type StoreHealth, storeAcceptsWrites } from './store-health.js';

export function pausePullsWhileFull(images: Worker, health: StoreHealth, paths: StorePaths, everyMs: number, log: Logger): void {
  let probing: NodeJS.Timeout | undefined;
  health.onChange((state) => {
    if (state !== 'disk-full' || probing) return;
    images.pause(true).catch(() => {});
    log.warn('store full: pulls paused until space is back');
    probing = setInterval(() => {
      void storeAcceptsWrites(paths, health.needBytes).then((ok) => {
        if (!ok || !probing) return;
        clearInterval(probing);
        probing = undefined;
        health.set('ok');
        images.resume();
        log.info('store has space again: pulls resumed');
      });
    }, everyMs);
    probing.unref();
  });
}
