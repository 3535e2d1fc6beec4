/**
 * The worker's image credential store (FLEETQ_IMAGE_AUTH_FILE): request
 * headers for image origins, kept on the host, never in Redis.
 *
 *   {
 *     "https://img.example.com":          { "authorization": "Bearer …" },
 *     "https://img.example.com/private/": { "authorization": "Basic …" }
 *   }
 *
 * A key is an origin (scheme, host, port) or an origin plus a path prefix.
 * A request gets the headers of the longest prefix that matches its origin
 * exactly and its path at a segment boundary (`/private` matches `/private`
 * and `/private/…`, not `/privateer`). Only credential headers are accepted
 * (`AUTH_HEADER_NAMES`), and the redirect interceptor
 * (`fetch/http-client.ts`) drops every one of them on a hop to another
 * origin.
 *
 * The file must be readable by the worker's user only (mode & 0o077 == 0),
 * like an ssh key: the worker refuses to start otherwise. Header values never
 * appear in errors, logs, `JSON.stringify` or `util.inspect` of the store.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { ConfigError } from '../lib/errors.js';
import { redactUrl } from '../lib/redact.js';

/** The config key of the credential store (the worker shows its variable). */
export const IMAGE_AUTH_SETTING = 'imageAuthFile';

/** The headers the store may set (lower case). All are dropped on a cross-origin redirect. */
export const AUTH_HEADER_NAMES: ReadonlySet<string> = new Set(['authorization', 'cookie', 'x-api-key', 'private-token', 'x-auth-token']);

export interface ImageAuthEntry {
  origin: string;
  /** "/" for a whole origin; otherwise without trailing "/" unless the key had one. */
  prefix: string;
  headers: Readonly<Record<string, string>>;
}

export class ImageAuth {
  readonly #entries: ImageAuthEntry[];

  /** Entries as `parseImageAuth` checks them; build a store with that (or `loadImageAuthFile`). */
  constructor(entries: ImageAuthEntry[]) {
    // Longest prefix first: the first match wins.
    this.#entries = [...entries].sort((a, b) => b.prefix.length - a.prefix.length);
  }

  static empty(): ImageAuth {
    return new ImageAuth([]);
  }

  get size(): number {
    return this.#entries.length;
  }

  /** The headers for a request to `url`, or undefined when no entry matches. A fresh object each time. */
  headersFor(url: string | URL): Record<string, string> | undefined {
    if (this.#entries.length === 0) return undefined;
    let u: URL;
    try {
      u = typeof url === 'string' ? new URL(url) : url;
    } catch {
      return undefined;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    for (const e of this.#entries) {
      if (e.origin === u.origin && pathMatches(u.pathname, e.prefix)) return { ...e.headers };
    }
    return undefined;
  }

  /** What may be shown: the keys and header names, never a value. */
  describe(): Array<{ key: string; headers: string[] }> {
    return this.#entries.map((e) => ({ key: e.prefix === '/' ? e.origin : `${e.origin}${e.prefix}`, headers: Object.keys(e.headers) }));
  }

  toJSON(): unknown {
    return { imageAuth: this.describe() };
  }

  [inspect.custom](): string {
    return `ImageAuth ${inspect(this.describe())}`;
  }
}

function pathMatches(pathname: string, prefix: string): boolean {
  if (prefix === '/' || pathname === prefix) return true;
  if (!pathname.startsWith(prefix)) return false;
  return prefix.endsWith('/') || pathname[prefix.length] === '/';
}

function fail(source: string, why: string): never {
  throw new ConfigError(`invalid image credential store (${source}): ${why}`, undefined, { settings: [IMAGE_AUTH_SETTING] });
}

// Visible ASCII and blanks, as RFC 9110 field values (no CR, LF, NUL: no header injection).
const FIELD_VALUE = /^[\x20-\x7e\t]+$/;

/** Check and index the store's JSON text. `source` names it in errors (a path). Values are never echoed. */
export function parseImageAuth(text: string, source: string): ImageAuth {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the error: it could be a credential.
    fail(source, 'is not valid JSON (expected {"https://host[:port][/prefix]": {"authorization": "…"}})');
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail(source, 'must be a JSON object mapping origins (or origin + path prefix) to headers');
  const entries: ImageAuthEntry[] = [];
  const seen = new Map<string, string>();
  for (const [key, headers] of Object.entries(raw as Record<string, unknown>)) {
    const shown = redactUrl(key);
    const shownKey = JSON.stringify(shown.length > 200 ? `${shown.slice(0, 200)}…` : shown);
    let url: URL;
    try {
      url = new URL(key);
    } catch {
      fail(source, `key ${shownKey} is not an absolute http(s) URL (write https://host[:port][/path/prefix])`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(source, `key ${shownKey} must be http:// or https://`);
    if (!/^https?:\/\/[^/\\]/i.test(key.trim())) fail(source, `key ${shownKey} must be written scheme://host…`);
    const authority = key.trim().replace(/^[a-z][a-z0-9+.-]*:[/\\]*/i, '').split(/[/\\?#]/, 1)[0]!;
    if (url.username || url.password || authority.includes('@')) fail(source, `key ${shownKey} must not carry credentials: put them in the header`);
    if (url.search || url.hash || /[?#]/.test(key)) fail(source, `key ${shownKey} must be an origin or origin + path prefix, without query or fragment`);
    const prefix = url.pathname === '' ? '/' : url.pathname;
    const id = `${url.origin}${prefix}`;
    if (seen.has(id)) fail(source, `keys ${seen.get(id)} and ${shownKey} name the same origin and prefix`);
    seen.set(id, shownKey);
    if (!headers || typeof headers !== 'object' || Array.isArray(headers)) fail(source, `${shownKey} must map to an object of headers, e.g. {"authorization": "Bearer …"}`);
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
      const lower = name.toLowerCase();
      const shownName = JSON.stringify(name.slice(0, 64));
      if (!AUTH_HEADER_NAMES.has(lower)) fail(source, `${shownKey}: header ${shownName} is not allowed (allowed: ${[...AUTH_HEADER_NAMES].join(', ')})`);
      if (lower in out) fail(source, `${shownKey}: header ${shownName} is given twice`);
      if (typeof value !== 'string' || value.trim() === '') fail(source, `${shownKey}: header ${shownName} must be a non-empty string`);
      if (!FIELD_VALUE.test(value)) fail(source, `${shownKey}: header ${shownName} holds characters a header value cannot (control characters, line breaks or non-ASCII)`);
      out[lower] = value.trim();
    }
    if (Object.keys(out).length === 0) fail(source, `${shownKey} maps to no header`);
    entries.push({ origin: url.origin, prefix, headers: Object.freeze(out) });
  }
  return new ImageAuth(entries);
}

/**
 * Read FLEETQ_IMAGE_AUTH_FILE at worker start: no path = an empty store.
 * The file is opened once, then its mode is checked on the open descriptor
 * (no race between the check and the read). Any problem is a ConfigError
 * naming the variable.
 */
export function loadImageAuthFile(path: string | undefined): ImageAuth {
  if (!path) return ImageAuth.empty();
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    fail(path, code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? "not readable by the worker's user" : `cannot be opened (${code ?? (err as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) fail(path, 'is not a regular file');
    if ((st.mode & 0o077) !== 0) {
      fail(path, `is readable or writable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): it holds credentials; chmod 600 it (owned by the worker's user)`);
    }
    if (st.size > 1024 * 1024) fail(path, 'is larger than 1 MiB');
    return parseImageAuth(readFileSync(fd, 'utf8'), path);
  } finally {
    closeSync(fd);
  }
}
