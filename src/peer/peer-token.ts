/**
 * The fleet token of the peer server: FLEETQ_PEER_TOKEN, or the first line of
 * FLEETQ_PEER_TOKEN_FILE (a regular file readable by the worker's user only,
 * mode & 0o077 == 0, checked on the open descriptor as the image credential
 * store is). Read once at worker start; problems are ConfigErrors listing the
 * setting. The token is never logged: only `tokenMatches` sees it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { ConfigError } from '../lib/errors.js';

const MIN_LENGTH = 16;

function fail(why: string): never {
  throw new ConfigError(`invalid peer token file: ${why}`, undefined, { settings: ['peerTokenFile'] });
}

export function loadPeerToken(token: string | undefined, file: string | undefined): string {
  if (token !== undefined) return token;
  if (file === undefined) throw new ConfigError('the peer server needs the fleet token', undefined, { settings: ['peerToken', 'peerTokenFile'] });
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    fail(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? "not readable by the worker's user" : `cannot be opened (${code})`}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) fail(`${file} is not a regular file`);
    if ((st.mode & 0o077) !== 0) fail(`${file} is readable or writable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): it holds the fleet token; chmod 600 it`);
    if (st.size > 64 * 1024) fail(`${file} is larger than 64 KiB`);
    const value = (readFileSync(fd, 'utf8').split(/\r?\n/)[0] ?? '').trim();
    if (value.length < MIN_LENGTH) fail(`${file} must hold a token of at least ${MIN_LENGTH} characters on its first line`);
    return value;
  } finally {
    closeSync(fd);
  }
}

/** The fleet token when one is configured (variable or file), else undefined: peer fetching is off without one. */
export function fleetToken(token: string | undefined, file: string | undefined): string | undefined {
  return token === undefined && file === undefined ? undefined : loadPeerToken(token, file);
}

const sha = (v: string) => createHash('sha256').update(v).digest();

/** A check of `Authorization: Bearer <token>` in constant time (equal-length digests of both values). */
export function tokenChecker(token: string): (authorization: string | undefined) => boolean {
  const want = sha(token);
  return (authorization) => {
    const m = authorization === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    const got = sha(m?.[1] ?? '');
    return timingSafeEqual(got, want) && m !== null;
  };
}
