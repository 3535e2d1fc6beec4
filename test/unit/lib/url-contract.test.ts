/**
 * Image URLs at the contract boundary (parsed once, canonical, no credentials)
 * and the one rendering of URLs for people (`redactUrl` / `redactDeep`), in
 * the forms that used to slip past redaction, and in the logger.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { asUsageError } from '../../../src/cli/flags.js';
import { UsageError } from '../../../src/cli/usage-error.js';
import { parsePayload } from '../../../src/jobs/contracts/common.js';
import { EnsureImagePayload } from '../../../src/jobs/contracts/ensure-image.js';
import { RestorePayload } from '../../../src/jobs/contracts/restore.js';
import { InvalidInputError } from '../../../src/lib/errors.js';
import { createLogger } from '../../../src/lib/log.js';
import { REDACTED, redactDeep, redactUrl } from '../../../src/lib/redact.js';

const parse = (image: unknown) => parsePayload(EnsureImagePayload, { image }, 'ensure-image').image;

function rejection(image: unknown): InvalidInputError {
  try {
    parse(image);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    return err as InvalidInputError;
  }
  throw new Error(`${JSON.stringify(image)} was accepted`);
}

describe('ImageUrl: parsed once, stored canonical', () => {
  it.each([
    ['https://img.example.com', 'https://img.example.com/'],
    ['HTTPS://Img.Example.COM:443/a/./b/../c.img', 'https://img.example.com/a/c.img'],
    ['http://img.example.com:80/x', 'http://img.example.com/x'],
    ['https://img.example.com/x.img#access_token=abc', 'https://img.example.com/x.img'],
    ['https://img.example.com/x.img#', 'https://img.example.com/x.img'],
    ['https://img.example.com/ü.img', 'https://img.example.com/%C3%BC.img'],
    ['https://[::1]:8080/x', 'https://[::1]:8080/x'],
    // Presigned URLs stay allowed (per-URL, short-lived) and untouched.
    [
      'https://bucket.s3.amazonaws.com/x.img?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=abc123',
      'https://bucket.s3.amazonaws.com/x.img?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=abc123',
    ],
    ['https://storage.googleapis.com/b/x.img?X-Goog-Signature=abc&sig=d&token=e', 'https://storage.googleapis.com/b/x.img?X-Goog-Signature=abc&sig=d&token=e'],
    ['https://h/x?a=b\\c', 'https://h/x?a=b\\c'], // after the query, "\\" is data
  ])('%s → %s', (input, canonical) => {
    expect(parse(input)).toBe(canonical);
    // Canonical is a fixed point: the worker re-parses what the producer stored.
    expect(parse(canonical)).toBe(canonical);
  });

  it.each([
    ['leading space', ' https://h/x', /must not start or end with whitespace/],
    ['leading tab', '\thttps://h/x', /must not start or end with whitespace/],
    ['trailing newline', 'https://h/x\n', /must not start or end with whitespace/],
    ['tab inside (the parser drops it)', 'https://h/x\t.img', /whitespace or control characters/],
    ['newline in the host', 'https://h\n.example/x', /whitespace or control characters/],
    ['space inside', 'https://h/a b.img', /whitespace or control characters/],
    ['backslash in the path', 'https://h/a\\b.img', /must not contain "\\" before the query/],
    ['backslashes for slashes', 'https:\\\\h\\x', /must not contain "\\" before the query/],
    ['no slashes', 'https:h/x', /exactly two slashes/],
    ['one slash', 'https:/h/x', /exactly two slashes/],
    ['three slashes', 'https:///h/x', /exactly two slashes/],
    ['no host', 'http://', /exactly two slashes|host/],
    ['bad port', 'https://h:99999/x', /host or port is not valid/],
    ['ftp', 'ftp://h/x', /unsupported protocol scheme "ftp"/],
    ['javascript', 'javascript:alert(1)', /unsupported protocol scheme "javascript"/],
    ['relative', '/x.img', /absolute http/],
  ])('rejects %s, naming the field', (_name, input, message) => {
    const err = rejection(input);
    expect(err.field).toBe('image');
    expect(err.message).toMatch(/^invalid ensure-image payload: image /);
    expect(err.message).toMatch(message);
    expect(err.permanent).toBe(true);
  });

  it.each([
    'https://user:hunter2@h/x',
    'https://tok3nonly@h/x',
    'https://:hunter2@h/x',
    'https://@h/x',
    'http:user:hunter2@h/x',
    'http:\\\\user:hunter2@h/x',
    'http:/\\user:hunter2@h/x',
    'http:///user:hunter2@h/x',
    'HTTPS://USER:hunter2@H/x?token=t0k',
    'https://user:hun@ter2@h/x',
  ])('refuses credentials in %s, pointing to FLEETQ_IMAGE_AUTH_FILE, shown redacted', (input) => {
    const err = rejection(input);
    expect(err.field).toBe('image');
    expect(err.message).toMatch(/^invalid ensure-image payload: image must not carry credentials .*FLEETQ_IMAGE_AUTH_FILE.* \(got ".*"\)$/);
    expect(err.message).toContain(REDACTED);
    for (const secret of ['hunter2', 'ter2', 'tok3nonly', 't0k']) expect(err.message).not.toContain(secret);
  });

  it('restore payloads use the same rules for image', () => {
    const base = { kind: 'clone', snapshot: 'golden', name: 'vm-1' };
    expect(parsePayload(RestorePayload, { ...base, image: 'HTTPS://H/x#frag' }, 'restore').image).toBe('https://h/x');
    expect(() => parsePayload(RestorePayload, { ...base, image: 'https://u:hunter2@h/x' }, 'restore')).toThrow(/^invalid restore payload: image must not carry credentials.*FLEETQ_IMAGE_AUTH_FILE/);
    expect(() => parsePayload(RestorePayload, { ...base, image: 'http:u:hunter2@h/x' }, 'restore')).not.toThrow(/hunter2/);
  });

  it('the CLI names the flag and keeps the redacted value', () => {
    let err: unknown;
    try {
      asUsageError(() => parse('https://bob:hunter2@h/x?X-Amz-Signature=s3cr3t'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe(
      `--image: must not carry credentials (user:password@): put them in the credential store of the workers that pull it (FLEETQ_IMAGE_AUTH_FILE), which sends them to that origin only (got "https://${REDACTED}@h/x?X-Amz-Signature=${REDACTED}")`,
    );
  });
});

describe('redactUrl: one rendering for people', () => {
  it.each([
    ['https://bob:hunter2@h/x', `https://${REDACTED}@h/x`],
    ['https://t0ken@h/x', `https://${REDACTED}@h/x`],
    ['http:bob:hunter2@h/x', `http://${REDACTED}@h/x`],
    ['http:\\\\bob:hunter2@h/x', `http://${REDACTED}@h/x`],
    ['http:///bob:hunter2@h/x', `http://${REDACTED}@h/x`],
    [' \thttps://bob:hunter2@h/x', `https://${REDACTED}@h/x`],
    ['https://bo\tb:hun\nter2@h/x', `https://${REDACTED}@h/x`],
    ['https://bob:hun ter2@h/x', `https://${REDACTED}@h/x`],
    ['https://bob:hun@ter2@h/x', `https://${REDACTED}@h/x`],
    ['https://bob:hun/ter2@h/x', `https://${REDACTED}@h/x`],
    ['redis://:hunter2@h:6379/0', `redis://${REDACTED}@h:6379/0`],
    ['https://h/cb#access_token=hunter2&state=1', `https://h/cb#${REDACTED}`],
    ['https://h/x#hunter2', `https://h/x#${REDACTED}`],
    ['https://h/x?tag=latest&X-Amz-Signature=hunter2', `https://h/x?tag=latest&X-Amz-Signature=${REDACTED}`],
    [
      'https://h/x?X-Amz-Credential=AKIA%2F20240101%2Fus-east-1&X-Amz-Date=20240101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host',
      `https://h/x?X-Amz-Credential=${REDACTED}&X-Amz-Date=${REDACTED}&X-Amz-Expires=${REDACTED}&X-Amz-SignedHeaders=${REDACTED}`,
    ],
    ['https://h/x?x-goog-signature=a&X-GOOG-CREDENTIAL=b&GoogleAccessId=c', `https://h/x?x-goog-signature=${REDACTED}&X-GOOG-CREDENTIAL=${REDACTED}&GoogleAccessId=c`],
    ['https://h/x?sig=a&se=2030&sp=r', `https://h/x?sig=${REDACTED}&se=2030&sp=r`],
    [
      'https://h/x?access_token=a&api_key=b&apiKey=c&Signature=d&Key-Pair-Id=e&password=f&auth=g&Credential=h&session=i&secret=j&q=k',
      `https://h/x?access_token=${REDACTED}&api_key=${REDACTED}&apiKey=${REDACTED}&Signature=${REDACTED}&Key-Pair-Id=${REDACTED}&password=${REDACTED}&auth=${REDACTED}&Credential=${REDACTED}&session=${REDACTED}&secret=${REDACTED}&q=k`,
    ],
    ['https://h/x?X%2DAmz%2DSignature=a', `https://h/x?X%2DAmz%2DSignature=${REDACTED}`],
    // Free text: URLs anywhere in a message, and paths without a scheme.
    [
      'HTTP 404 from https://h/x?X-Amz-Signature=hunter2&token=t0k (image not found)',
      `HTTP 404 from https://h/x?X-Amz-Signature=${REDACTED}&token=${REDACTED} (image not found)`,
    ],
    ['network error fetching http:bob:hunter2@h/x: ECONNREFUSED', `network error fetching http:${REDACTED}@h/x: ECONNREFUSED`],
    ['redirected to "https://h/cb#access_token=hunter2"', `redirected to "https://h/cb#${REDACTED}"`],
    ['GET /x.img?token=hunter2 HTTP/1.1', `GET /x.img?token=${REDACTED} HTTP/1.1`],
  ])('%s', (input, shown) => {
    expect(redactUrl(input)).toBe(shown);
    expect(redactUrl(shown)).toBe(shown); // idempotent: redacting twice changes nothing
  });

  it.each([
    'https://epoch.example/dl/win11',
    'https://h/x?tag=latest&arch=amd64',
    'not a url',
    'job #3 failed: disk & network ok',
    'contact bob@example.com',
    'https://registry.example/@scope/pkg',
    'https://h/images/ubuntu@22.04.img',
    'sha256:0123abcd',
    '',
  ])('leaves %j as it is', (input) => {
    expect(redactUrl(input)).toBe(input);
  });

  it('redactDeep: every string, object keys, nested, without touching the input', () => {
    const data = {
      image: 'https://h/x?X-Amz-Signature=hunter2',
      nested: [{ u: 'http:bob:hunter2@h/x', n: 1, ok: true, nil: null }],
      'https://h/a?token=k1': 'first',
      'https://h/a?token=k2': 'second',
      at: new Date(0),
      url: new URL('https://bob:hunter2@h/#frag'),
    };
    const copy = structuredClone({ ...data, url: undefined });
    const out = redactDeep(data) as Record<string, unknown>;
    const text = JSON.stringify(out);
    for (const secret of ['hunter2', 'k1', 'k2', 'frag']) expect(text).not.toContain(secret);
    expect(out.image).toBe(`https://h/x?X-Amz-Signature=${REDACTED}`);
    expect((out.nested as Array<Record<string, unknown>>)[0]).toEqual({ u: `http://${REDACTED}@h/x`, n: 1, ok: true, nil: null });
    expect(Object.values(out)).toEqual(expect.arrayContaining(['first', 'second'])); // keys that differ only in secrets are both kept
    expect(out.at).toBe('1970-01-01T00:00:00.000Z');
    expect({ ...data, url: undefined }).toEqual(copy);
    const cyclic: Record<string, unknown> = { a: 'https://h/?sig=hunter2' };
    cyclic.self = cyclic;
    expect(redactDeep(cyclic)).toEqual({ a: `https://h/?sig=${REDACTED}`, self: '[Circular]' });
  });
});

describe('logs are redacted by construction', () => {
  function capture() {
    const lines: string[] = [];
    const dest = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    return { log: createLogger({ level: 'debug', host: 'h1' }, dest), lines };
  }

  it('url/image fields, err messages and stacks, child bindings, messages, nested data', () => {
    const { log, lines } = capture();
    const presigned = 'https://h/x.img?X-Amz-Signature=SECRET1&token=SECRET2#access_token=SECRET3';
    log.info({ url: presigned, image: 'http:bob:SECRET4@h/x' }, 'fields');
    log.warn({ err: new Error(`HTTP 404 from ${presigned}`) }, 'an error');
    log.warn({ err: `network error fetching ${presigned}` }, 'an error message as a string');
    log.error(new Error(`failed: ${presigned}`));
    log.child({ jobId: '1', image: presigned }).info('child');
    log.info(`message text with ${presigned}`);
    log.info({ data: { nested: [{ image: presigned }] }, reason: `HTTP 500 from ${presigned}` }, 'nested');
    log.info({ headers: { authorization: 'Bearer SECRET5', cookie: 'sid=SECRET6' }, password: 'SECRET7', redisUrl: 'redis://:SECRET8@h' }, 'censored');
    const text = lines.join('');
    expect(lines).toHaveLength(8);
    for (const s of ['SECRET1', 'SECRET2', 'SECRET3', 'SECRET4', 'SECRET5', 'SECRET6', 'SECRET7', 'SECRET8']) expect(text).not.toContain(s);
    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed[0].url).toBe(`https://h/x.img?X-Amz-Signature=${REDACTED}&token=${REDACTED}#${REDACTED}`);
    expect(parsed[1].err).toMatchObject({ type: 'Error', message: expect.stringContaining(`X-Amz-Signature=${REDACTED}`), stack: expect.stringContaining(REDACTED) });
    expect(parsed[3].msg).toContain(`X-Amz-Signature=${REDACTED}`);
    expect(parsed[3].err.message).toContain(`X-Amz-Signature=${REDACTED}`);
    expect(parsed[4]).toMatchObject({ jobId: '1', host: 'h1', image: expect.stringContaining(REDACTED) });
  });
});
