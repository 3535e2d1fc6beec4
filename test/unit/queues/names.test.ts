/**
 * src/queues/names.ts: every queue name, board name, dedup id and image child
 * id is built (and parsed) there. Pure, so checked here without Redis; the
 * integration test keys-and-names.test.ts checks them against BullMQ and the
 * board, raw-producer.test.ts against docs/JOBS.md.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest.js';
import {
  BOARD_DELIMITER,
  boardName,
  boardNaming,
  ensureImageDedupId,
  imageChildId,
  imageChildIds,
  imageQueueName,
  legacyQueueName,
  parseQueueName,
  QUEUE_KINDS,
  queueName,
  queueOfBoardName,
  restoreQueueName,
} from '../../../src/queues/names.js';

const D = Digest.parse(`sha256:${'ab'.repeat(32)}`);
const E = Digest.parse(`sha256:${'cd'.repeat(32)}`);
const URL_A = 'https://images.example/win11.qcow2';
const URL_B = 'https://mirror.example/win11.qcow2';

describe('queue names', () => {
  it('images-{<host>} and restores-{<host>}: the host is a Cluster hash tag', () => {
    expect(queueName('images', 'h1')).toBe('images-{h1}');
    expect(imageQueueName('web-1.eu_2')).toBe('images-{web-1.eu_2}');
    expect(restoreQueueName('web-1.eu_2')).toBe('restores-{web-1.eu_2}');
    expect(QUEUE_KINDS).toEqual(['images', 'restores']);
  });

  it('no name contains ":" (BullMQ refuses it in a queue name)', () => {
    for (const kind of QUEUE_KINDS) for (const host of ['h1', 'A-b.c_d-9']) expect(queueName(kind, host)).not.toContain(':');
  });

  it('parses back what it builds, and the legacy names for `fleetq migrate`', () => {
    for (const kind of QUEUE_KINDS) {
      for (const host of ['h1', 'a', 'A-b.c_d-9', 'x'.repeat(63)]) {
        expect(parseQueueName(queueName(kind, host))).toEqual({ kind, host, legacy: false });
        expect(parseQueueName(legacyQueueName(kind, host))).toEqual({ kind, host, legacy: true });
      }
    }
    expect(legacyQueueName('restores', 'h.1')).toBe('restores-h.1');
  });

  it.each([
    'images-{h1',
    'images-h1}',
    'dead-{h1}',
    'images-{}',
    'images-{-h1}',
    'images-{h:1}',
    `images-{${'x'.repeat(64)}}`,
    'IMAGES-{h1}',
    'images-{h1}x',
    '',
  ])('refuses %j', (name) => {
    expect(parseQueueName(name)).toBeUndefined();
  });
});

describe('board names', () => {
  it('<host>:<queue>, with the adapter options that make Bull Board produce it', () => {
    expect(BOARD_DELIMITER).toBe(':');
    expect(boardName('images', 'h1')).toBe('h1:images-{h1}');
    expect(boardNaming('restores', 'web-1')).toEqual({
      name: 'web-1:restores-{web-1}',
      adapterOptions: { prefix: 'web-1:', delimiter: ':' },
    });
  });

  it('queueOfBoardName inverts boardName and nothing else', () => {
    for (const kind of QUEUE_KINDS) {
      for (const host of ['h1', 'A-b.c_d-9']) expect(queueOfBoardName(boardName(kind, host))).toEqual({ kind, host, queue: queueName(kind, host) });
    }
    expect(queueOfBoardName('images-{h1}')).toBeUndefined(); // no host part
    expect(queueOfBoardName('h2:images-{h1}')).toBeUndefined(); // hosts disagree
    expect(queueOfBoardName('h1:images-h1')).toBeUndefined(); // legacy names are not on the board
    expect(queueOfBoardName('h1:dead-{h1}')).toBeUndefined();
  });
});

describe('ensureImageDedupId (published in docs/JOBS.md)', () => {
  const urlHash = (u: string) => createHash('sha256').update(u).digest('hex').slice(0, 40);

  it('unpinned: ensure-image.<host>.u-<40 hex of sha256(url)>', () => {
    expect(ensureImageDedupId('h1', URL_A, undefined, undefined)).toBe(`ensure-image.h1.u-${urlHash(URL_A)}`);
  });

  it("pinned: the digest's hex, then the URL; force adds .force", () => {
    expect(ensureImageDedupId('h1', URL_A, D, undefined)).toBe(`ensure-image.h1.d-${D.hex}.u-${urlHash(URL_A)}`);
    expect(ensureImageDedupId('h1', URL_A, D, true)).toBe(`ensure-image.h1.d-${D.hex}.u-${urlHash(URL_A)}.force`);
    expect(ensureImageDedupId('h1', URL_A, undefined, false)).toBe(`ensure-image.h1.u-${urlHash(URL_A)}`);
  });

  it('one id per (host, URL, digest, force): each part tells jobs apart', () => {
    const ids = [
      ensureImageDedupId('h1', URL_A, D, undefined),
      ensureImageDedupId('h2', URL_A, D, undefined),
      ensureImageDedupId('h1', URL_B, D, undefined), // same pin through another URL: its own verdict
      ensureImageDedupId('h1', URL_A, E, undefined),
      ensureImageDedupId('h1', URL_A, undefined, undefined),
      ensureImageDedupId('h1', URL_A, D, true),
    ];
    expect(new Set(ids).size).toBe(ids.length);
    expect(ensureImageDedupId('h1', URL_A, Digest.parse(D.value), undefined)).toBe(ids[0]);
  });
});

describe('image child ids', () => {
  it('<restore id>.image.<attempt>, newest first', () => {
    expect(imageChildId('r-7', 0)).toBe('r-7.image.0');
    expect(imageChildIds('r-7', 2)).toEqual(['r-7.image.2', 'r-7.image.1', 'r-7.image.0']);
    expect(imageChildIds('r-7', 0)).toEqual(['r-7.image.0']);
  });
});
