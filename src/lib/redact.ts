/**
 * Secret redaction for anything shown to people (logs, CLI output, job
 * results, error messages, the dashboard). Pure.
 *
 * `redactUrl` takes any string (a URL, or free text that may hold URLs) and
 * renders it with:
 *   - userinfo replaced (`https://REDACTED@host/…`), in every spelling the
 *     WHATWG parser accepts: `http:user:pw@host`, `http:\\user:pw@host`,
 *     `http:///user:pw@host`, leading blanks, tabs or newlines inside;
 *   - every fragment of a URL replaced (`#REDACTED`): OAuth implicit flows
 *     put `access_token=…` there;
 *   - the value of every query (or fragment) parameter whose name looks
 *     secret replaced by `REDACTED`: names containing signature, sig, token,
 *     key, secret, password, auth, credential, session…, and every
 *     `X-Amz-*` / `X-Goog-*` parameter (S3/GCS presigned URLs).
 * It errs on the side of redacting: a rendering is for reading, never for
 * fetching (workers fetch the stored URL, not this).
 */

export const REDACTED = 'REDACTED';

/** A query/fragment parameter name (percent-decoded, any case) whose value is a secret. */
const SECRET_PARAM = /sig|token|key|secret|passw|pwd|auth|credential|session|^x-(?:amz|goog)-/i;

/** True when a query parameter of this name is masked. */
export function isSecretParam(name: string): boolean {
  let decoded = name;
  try {
    decoded = decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    // keep the raw name
  }
  return SECRET_PARAM.test(decoded) || SECRET_PARAM.test(name);
}

/** Characters that end a URL inside free text (and that never occur in a canonical URL). */
const STOP = `\\s"'<>\``;
/** scheme ":" then slashes or backslashes: where an authority (and userinfo) may start. */
const AUTHORITY_START = /\b([a-z][a-z0-9+.-]*:)([\/\\]*)/gi;
/** Where a URL ends in text, or its authority at the latest (WHATWG: "?" and "#"). */
const TAIL_END = new RegExp(`[${STOP}?#]`);
/** Userinfo is looked for this far after a scheme (bounds the work on long text with many colons). */
const MAX_AUTHORITY = 2048;
/** A URL inside free text: scheme ":" followed by a slash, a backslash or a userinfo "@". */
const URL_RUN = new RegExp(`\\b[a-z][a-z0-9+.-]*:(?:[\\/\\\\]|[^${STOP}\\/\\\\?#]*@)[^${STOP}]*`, 'gi');
/** name=value after "?", "&", ";" or "#", anywhere (also in paths without a scheme: "GET /x?token=…"). */
const PARAM = new RegExp(`([?&;#])([^=&;#?${STOP}]+)=([^&;#${STOP}]*)`, 'g');

/** Nothing to redact without one of these: the fast path for the common clean URL. */
const MAY_HOLD_SECRET = /[@?#&;]/;

/** Render `input` (a URL, or any text that may contain URLs) with credentials, fragments and secret parameters removed. */
export function redactUrl(input: string): string {
  if (!MAY_HOLD_SECRET.test(input)) return input;
  let s = input;
  // The whole string as the WHATWG parser (hence a fetch) reads it: userinfo with blanks or tabs inside.
  s = redactParsedUserinfo(s);
  s = redactUserinfo(s);
  s = s.replace(URL_RUN, (run) => {
    const hash = run.indexOf('#');
    return hash >= 0 && hash < run.length - 1 ? `${run.slice(0, hash)}#${REDACTED}` : run;
  });
  s = s.replace(PARAM, (m, sep: string, name: string, value: string) => (value && value !== REDACTED && isSecretParam(name) ? `${sep}${name}=${REDACTED}` : m));
  return s;
}

/**
 * Replace the userinfo after every `scheme:` (with or without slashes): up to
 * the last "@" of the authority, as WHATWG reads it; and, for a malformed one
 * whose password holds a "/" (`https://u:p/w@host`, not a valid URL, but what
 * someone may paste), up to the first "@" when the first segment is no
 * host:port.
 */
function redactUserinfo(s: string): string {
  if (!s.includes('@')) return s;
  let out = '';
  let last = 0;
  AUTHORITY_START.lastIndex = 0;
  for (let m = AUTHORITY_START.exec(s); m; m = AUTHORITY_START.exec(s)) {
    const start = m.index + m[0].length;
    const window = s.slice(start, start + MAX_AUTHORITY);
    const end = window.search(TAIL_END);
    const tail = end < 0 ? window : window.slice(0, end);
    const first = tail.split(/[/\\]/, 1)[0]!;
    let userinfo = -1;
    if (first.includes('@')) userinfo = first.lastIndexOf('@');
    else if (tail.includes('@') && !first.startsWith('[') && /:(?!\d*$)/.test(first)) userinfo = tail.indexOf('@');
    if (userinfo < 0) continue;
    out += `${s.slice(last, start)}${REDACTED}`;
    last = start + userinfo;
    AUTHORITY_START.lastIndex = last;
  }
  return last === 0 ? s : out + s.slice(last);
}

function redactParsedUserinfo(s: string): string {
  if (!s.includes('@') || !/^[\s\x00-\x1f]*[a-z][a-z0-9+.-]*:/i.test(s)) return s;
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return s;
  }
  if (!url.host || (!url.username && !url.password)) return s;
  return `${url.protocol}//${REDACTED}@${url.host}${url.pathname}${url.search}${url.hash}`;
}

const MAX_DEPTH = 64;

/**
 * What JSON.stringify would show of `value`, with `redactUrl` applied to every
 * string and to every object key. Objects with `toJSON` (Date, URL, Buffer)
 * are taken as that; cycles become "[Circular]". Never mutates its input.
 * The type is kept for JSON data (job payloads, results); a Date or an Error
 * inside comes out as what JSON would make of it.
 */
export function redactDeep<T>(value: T): T {
  return deep(value, new Set(), 0) as T;
}

function deep(value: unknown, seen: Set<object>, depth: number): unknown {
  if (typeof value === 'string') return redactUrl(value);
  if (!value || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[…]';
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    const json = (value as { toJSON(): unknown }).toJSON();
    if (json !== value) return deep(json, seen, depth);
  }
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => deep(v, seen, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const shown = redactUrl(k);
      let key = shown;
      // Two keys that differ only in their secrets must not overwrite each other.
      for (let n = 2; Object.hasOwn(out, key); n++) key = `${shown} (${n})`;
      out[key] = deep(v, seen, depth + 1);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}
