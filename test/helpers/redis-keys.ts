/** Every key in a Redis database, by SCAN (tests only: fleetq itself never scans). Sorted. */
import type { Redis } from 'ioredis';

export async function scanAllKeys(redis: Redis): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys.sort();
}
