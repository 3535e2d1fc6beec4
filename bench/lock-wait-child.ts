/**
 * One process of the lock-wait benchmark (forked with IPC by
 * bench/scenarios/lock-wait.ts). It runs real PullCoordinator instances
 * against the bench's redis-server: one leader on request, and N followers,
 * each follower with its own coordinator (no in-process singleflight, so
 * every follower goes through the Redis lock and the release channel, as N
 * separate worker processes would), sharing this process's lock connection
 * and pub/sub subscriber.
 *
 *   argv: REDIS_URL PREFIX HOST
 *   in:   {cmd:'lead', digest, file} · {cmd:'commit'} · {cmd:'follow', n, digest, file}
 *   out:  {ev:'ready'} · {ev:'leading'} · {ev:'led', tCommit} · {ev:'waiting'} · {ev:'followed', results}
 * Times are performance.timeOrigin + performance.now() (ms, comparable across processes).
 */
import { lstat, writeFile } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Digest } from '../src/lib/digest.js';
import { lockKeyPrefix, type PullKey } from '../src/lock/keys.js';
import { PullCoordinator } from '../src/lock/pull-coordinator.js';
import { ReleaseNotifier } from '../src/lock/release-notifier.js';

const [url, prefix, host] = process.argv.slice(2) as [string, string, string];
const lockRedis = new Redis(url, { maxRetriesPerRequest: null, keyPrefix: lockKeyPrefix(prefix) }); // the lock's own client: <prefix>:mutex:…
const subscriber = new Redis(url, { maxRetriesPerRequest: null });
const notifier = new ReleaseNotifier(subscriber);
const now = () => performance.timeOrigin + performance.now();
const send = (m: unknown) => process.send!(m);

// Count the coordinators' "waiting for pull leader" debug lines: that is when a follower sleeps on the channel.
let waiting = 0;
let waitTarget = -1;
const log = pino(
  { level: 'debug' },
  {
    write(s: string) {
      if (s.includes('waiting for pull leader') && ++waiting === waitTarget) send({ ev: 'waiting' });
    },
  },
);
const coordinator = () => new PullCoordinator({ redis: lockRedis, notifier, prefix, host, ttlMs: 30_000, log });
const exists = async (file: string) => {
  try {
    await lstat(file);
    return true;
  } catch {
    return false;
  }
};

let commit: (() => void) | undefined;

interface Msg {
  cmd: 'lead' | 'commit' | 'follow' | 'exit';
  digest?: string;
  file?: string;
  n?: number;
}

process.on('message', (m: Msg) => {
  const key = (): PullKey => ({ kind: 'digest', digest: Digest.parse(m.digest) });
  const recheck = async () => ((await exists(m.file!)) ? 'present' : undefined);
  if (m.cmd === 'lead') {
    const committed = new Promise<void>((r) => (commit = r));
    let tCommit = 0;
    coordinator()
      .run({
        key: key(),
        recheck,
        lead: async () => {
          send({ ev: 'leading' });
          await committed;
          await writeFile(m.file!, 'blob');
          tCommit = now();
          return 'pulled';
        },
      })
      .then(
        (o) => send({ ev: 'led', role: o.role, tCommit }),
        (err) => send({ ev: 'error', message: String(err) }),
      );
  } else if (m.cmd === 'commit') {
    commit?.();
  } else if (m.cmd === 'follow') {
    waiting = 0;
    waitTarget = m.n!;
    if (m.n === 0) send({ ev: 'waiting' });
    Promise.all(
      Array.from({ length: m.n! }, async () => {
        const o = await coordinator().run({
          key: key(),
          recheck,
          lead: async () => {
            throw new Error('a follower became the leader');
          },
        });
        return { tDone: now(), role: o.role, lockWaitMs: o.lockWaitMs };
      }),
    ).then(
      (results) => send({ ev: 'followed', results }),
      (err) => send({ ev: 'error', message: String(err) }),
    );
  } else if (m.cmd === 'exit') {
    lockRedis.disconnect();
    subscriber.disconnect();
    process.exit(0);
  }
});

await Promise.all([lockRedis.ping(), subscriber.ping()]);
send({ ev: 'ready' });
