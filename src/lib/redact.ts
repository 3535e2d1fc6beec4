/**
 * Secret redaction for anything that leaves the process (logs, job results,
 * error messages, the dashboard). Pure.
 */
const SECRET_PARAM = /(token|key|sig|signature|secret|password|passwd|pwd|auth|credential|session|x-amz-[a-z-]+)/i;

/** Remove URL credentials and mask secret-looking query parameters. Non-URLs are returned unchanged. */
export function redactUrl(input: string): string {
  // Fast path (every ensure-image job logs its URL): credentials need "@" and
  // secret parameters need "?", so without either there is nothing to redact
  // and parsing the URL (~5 µs) would return the input unchanged anyway.
  if (!input.includes('@') && !input.includes('?')) return input;
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return input;
  }
  let changed = false;
  if (url.username || url.password) {
    url.username = url.username ? '***' : '';
    url.password = url.password ? '***' : '';
    changed = true;
  }
  for (const key of [...url.searchParams.keys()]) {
    if (SECRET_PARAM.test(key)) {
      url.searchParams.set(key, '***');
      changed = true;
    }
  }
  return changed ? url.toString() : input;
}

/** Deep copy of `value` with every URL-looking string redacted. */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return (/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? redactUrl(value) : value) as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v)) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v);
    return out as T;
  }
  return value;
}
