/**
 * Reading a secret from a file: a regular file readable by this process's
 * user only (mode & 0o077 == 0, checked on the open descriptor, so a swap of
 * the path after the check cannot slip another file in), at most 64 KiB, its
 * first line trimmed. Problems are ConfigErrors naming the setting (the
 * caller's config key, shown as its variable by config/setting-hint.ts);
 * the secret itself is never part of a message.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { ConfigError } from './errors.js';

export interface SecretFileSpec {
  /** What the file holds, for messages: "Redis password". */
  what: string;
  /** The config key that names the file (`redisPasswordFile`). */
  setting: string;
  minLength?: number;
}

export function readSecretFile(file: string, spec: SecretFileSpec): string {
  const fail = (why: string): never => {
    throw new ConfigError(`invalid ${spec.what} file: ${why}`, undefined, { settings: [spec.setting] });
  };
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? "not readable by this process's user" : `cannot be opened (${code})`}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) fail(`${file} is not a regular file`);
    if ((st.mode & 0o077) !== 0) fail(`${file} is readable or writable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): it holds the ${spec.what}; chmod 600 it`);
    if (st.size > 64 * 1024) fail(`${file} is larger than 64 KiB`);
    const value = (readFileSync(fd, 'utf8').split(/\r?\n/)[0] ?? '').trim();
    if (value.length < (spec.minLength ?? 1)) fail(`${file} must hold the ${spec.what} on its first line${spec.minLength ? ` (at least ${spec.minLength} characters)` : ''}`);
    return value;
  } finally {
    closeSync(fd);
  }
}
