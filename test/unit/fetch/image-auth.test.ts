/**
 * The image credential store (FLEETQ_IMAGE_AUTH_FILE): which request gets
 * which header, what the file must look like (mode 0600, JSON, allowed
 * headers), that values never show, and — over real loopback HTTP through the
 * worker's dispatcher — that a header goes to its origin only, never across a
 * redirect to another origin.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import { parseDestinationPolicy } from '../../../src/fetch/destination-policy.js';
import { fetchImage } from '../../../src/fetch/fetch-image.js';
import { createHttpClient } from '../../../src/fetch/http-client.js';
import { messageWithSettings } from '../../../src/config/setting-hint.js';
import { AUTH_HEADER_NAMES, loadImageAuthFile, parseImageAuth } from '../../../src/fetch/image-auth.js';
import { ConfigError } from '../../../src/lib/errors.js';

const SECRET = 'Bearer s3cr3t-value';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    // fetch/ names the config key; the CLI shows the variable that sets it.
    expect((err as ConfigError).settings).toEqual(['imageAuthFile']);
    expect((err as Error).message).toMatch(/^invalid image credential store /);
    expect((err as Error).message).not.toContain('FLEETQ_');
    expect(messageWithSettings(err as ConfigError)).toMatch(/ \(FLEETQ_IMAGE_AUTH_FILE\)$/);
    return err as ConfigError;
  }
  throw new Error('accepted');
}

describe('matching: origin exact, longest path prefix at a segment boundary', () => {
  const store = parseImageAuth(
    JSON.stringify({
      'https://img.example.com': { Authorization: 'Bearer root' },
      'https://img.example.com/private/': { authorization: 'Basic private' },
      'https://img.example.com/private/deeper': { authorization: 'Basic deeper' },
      'http://img.example.com:8080/': { 'x-api-key': 'k8080' },
      'HTTPS://Other.Example.COM:443/a/../b': { 'private-token': 'other' },
    }),
    'test',
  );

  it.each([
    ['https://img.example.com/x.img', { authorization: 'Bearer root' }],
    ['https://img.example.com:443/x.img', { authorization: 'Bearer root' }],
    ['https://IMG.example.com/x.img?X-Amz-Signature=a', { authorization: 'Bearer root' }],
    ['https://img.example.com/private/x.img', { authorization: 'Basic private' }],
    ['https://img.example.com/private', { authorization: 'Bearer root' }], // "/private/" needs the slash
    ['https://img.example.com/private/deeper', { authorization: 'Basic deeper' }],
    ['https://img.example.com/private/deeper/x.img', { authorization: 'Basic deeper' }],
    ['https://img.example.com/private/deeperx.img', { authorization: 'Basic private' }], // segment boundary
    ['https://img.example.com/private/a/../deeper/x', { authorization: 'Basic deeper' }],
    ['http://img.example.com:8080/x', { 'x-api-key': 'k8080' }],
    ['https://other.example.com/b/x.img', { 'private-token': 'other' }],
    ['https://other.example.com/b', { 'private-token': 'other' }],
  ])('%s', (url, headers) => {
    expect(store.headersFor(url)).toEqual(headers);
  });

  it.each([
    'http://img.example.com/x.img', // other scheme
    'https://img.example.com:8443/x.img', // other port
    'http://img.example.com/x', // port 80, not 8080
    'https://sub.img.example.com/x.img', // other host
    'https://img.example.com.evil.test/x.img',
    'https://other.example.com/bx', // not under /b
    'https://other.example.com/', // not under /b
    'ftp://img.example.com/x',
    'not a url',
  ])('nothing for %s', (url) => {
    expect(store.headersFor(url)).toBeUndefined();
  });

  it('returns a fresh object each time, and an empty store answers nothing', () => {
    const a = store.headersFor('https://img.example.com/x')!;
    a.authorization = 'changed';
    expect(store.headersFor('https://img.example.com/x')).toEqual({ authorization: 'Bearer root' });
    expect(loadImageAuthFile(undefined).headersFor('https://img.example.com/x')).toBeUndefined();
  });

  it('never shows a value: JSON, inspect, describe', () => {
    const text = `${JSON.stringify(store)} ${inspect(store, { depth: 10, showHidden: true })} ${JSON.stringify(store.describe())} ${String(store)}`;
    for (const v of ['Bearer root', 'Basic private', 'k8080', 'other"']) expect(text).not.toContain(v);
    expect(store.describe()).toContainEqual({ key: 'https://img.example.com/private/', headers: ['authorization'] });
  });
});

describe('the file is checked, and values never appear in errors', () => {
  it.each([
    ['not JSON', `{"https://h": {"authorization": "${SECRET}"`, /not valid JSON/],
    ['an array', `["${SECRET}"]`, /JSON object/],
    ['a key that is no URL', JSON.stringify({ 'img.example.com': { authorization: SECRET } }), /not an absolute http\(s\) URL/],
    ['an ftp key', JSON.stringify({ 'ftp://h': { authorization: SECRET } }), /http:\/\/ or https:\/\//],
    ['a key without //', JSON.stringify({ 'https:h/x': { authorization: SECRET } }), /scheme:\/\/host/],
    ['a key with credentials', JSON.stringify({ 'https://u:hunter2@h': { authorization: SECRET } }), /must not carry credentials/],
    ['a key with a query', JSON.stringify({ 'https://h/x?a=1': { authorization: SECRET } }), /without query or fragment/],
    ['a key with a fragment', JSON.stringify({ 'https://h/x#a': { authorization: SECRET } }), /without query or fragment/],
    ['two keys for one origin', JSON.stringify({ 'https://h': { authorization: SECRET }, 'https://H:443/': { authorization: SECRET } }), /name the same origin and prefix/],
    ['headers not an object', JSON.stringify({ 'https://h': SECRET }), /object of headers/],
    ['no header', JSON.stringify({ 'https://h': {} }), /maps to no header/],
    ['a header not allowed', JSON.stringify({ 'https://h': { host: SECRET } }), /header "host" is not allowed/],
    ['user-agent', JSON.stringify({ 'https://h': { 'user-agent': SECRET } }), /not allowed/],
    ['a header twice', JSON.stringify({ 'https://h': { authorization: SECRET, Authorization: SECRET } }), /given twice/],
    ['an empty value', JSON.stringify({ 'https://h': { authorization: ' ' } }), /non-empty string/],
    ['a number', JSON.stringify({ 'https://h': { authorization: 42 } }), /non-empty string/],
    ['a line break (header injection)', JSON.stringify({ 'https://h': { authorization: `${SECRET}\r\nx-evil: 1` } }), /cannot/],
    ['non-ASCII', JSON.stringify({ 'https://h': { authorization: `${SECRET}é` } }), /cannot/],
  ])('refuses %s', (_name, text, message) => {
    const err = configError(() => parseImageAuth(text, '/etc/fleetq/image-auth.json'));
    expect(err.message).toMatch(message);
    expect(err.message).toContain('/etc/fleetq/image-auth.json');
    expect(err.message).not.toContain('s3cr3t');
    expect(err.message).not.toContain('hunter2');
  });

  it('allows authorization and a few credential headers only', () => {
    expect([...AUTH_HEADER_NAMES]).toEqual(['authorization', 'cookie', 'x-api-key', 'private-token', 'x-auth-token']);
  });
});

describe('loadImageAuthFile: readable by the worker only', () => {
  let dir: string;
  const file = (name: string, text: string, mode: number) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    chmodSync(p, mode);
    return p;
  };
  const good = JSON.stringify({ 'https://h': { authorization: SECRET } });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fleetq-auth-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads a 0600 (or 0400) file', () => {
    expect(loadImageAuthFile(file('ok.json', good, 0o600)).headersFor('https://h/x')).toEqual({ authorization: SECRET });
    expect(loadImageAuthFile(file('ro.json', good, 0o400)).size).toBe(1);
  });

  it.each([0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o666])('refuses mode %s', (mode) => {
    const err = configError(() => loadImageAuthFile(file(`m${mode.toString(8)}.json`, good, mode)));
    expect(err.message).toMatch(/readable or writable by group or others/);
    expect(err.message).toContain(`0${mode.toString(8)}`);
    expect(err.message).not.toContain('s3cr3t');
  });

  it('refuses a missing file, a directory and unparsable content', () => {
    expect(configError(() => loadImageAuthFile(join(dir, 'missing.json'))).message).toMatch(/no such file/);
    const sub = join(dir, 'sub');
    mkdirSync(sub, { mode: 0o700 });
    expect(configError(() => loadImageAuthFile(sub)).message).toMatch(/not a regular file/);
    const bad = configError(() => loadImageAuthFile(file('bad.json', `{"https://h": "${SECRET}`, 0o600)));
    expect(bad.message).toMatch(/not valid JSON/);
    expect(bad.message).not.toContain('s3cr3t');
  });

  it('is configured by FLEETQ_IMAGE_AUTH_FILE, made absolute', () => {
    expect(loadConfig({ FLEETQ_IMAGE_AUTH_FILE: 'rel/auth.json' }).imageAuthFile).toBe(join(process.cwd(), 'rel/auth.json'));
    expect(loadConfig({}).imageAuthFile).toBeUndefined();
  });
});

describe('over HTTP: the header reaches its origin only', () => {
  interface Seen {
    path: string;
    headers: IncomingHttpHeaders;
  }
  const servers: Server[] = [];
  async function server(handler: (path: string, res: import('node:http').ServerResponse) => void): Promise<{ origin: string; seen: Seen[] }> {
    const seen: Seen[] = [];
    const s = createServer((req, res) => {
      seen.push({ path: req.url ?? '', headers: req.headers });
      handler(req.url ?? '/', res);
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    servers.push(s);
    return { origin: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, seen };
  }
  afterAll(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
  });

  const body = Buffer.from('image-bytes');
  async function get(url: string, headers: Record<string, string> | undefined, dispatcher = createHttpClient({ idleTimeoutMs: 5000, maxRedirects: 5, policy: parseDestinationPolicy(undefined) })) {
    const res = await fetchImage({ url, dispatcher, totalTimeoutMs: 5000, minRate: 0, rateWindowMs: 30_000, headers });
    const chunks: Buffer[] = [];
    for await (const c of res.chunks()) chunks.push(c);
    await dispatcher.close();
    return Buffer.concat(chunks);
  }

  it('sends the header to its origin, keeps it on a same-origin redirect, drops every credential header on a cross-origin one', async () => {
    const other = await server((_p, res) => res.writeHead(200, { 'content-length': body.length }).end(body));
    const authed = await server((path, res) => {
      if (path === '/private/hop') return void res.writeHead(302, { location: '/private/img' }).end();
      if (path === '/private/away') return void res.writeHead(302, { location: `${other.origin}/img` }).end();
      if (path === '/private/away-and-back') return void res.writeHead(302, { location: `${other.origin}/back` }).end();
      return void res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    const store = parseImageAuth(
      JSON.stringify({
        [`${authed.origin}/private/`]: { authorization: SECRET, 'x-api-key': 'k-s3cr3t', cookie: 'sid=s3cr3t' },
        [other.origin.replace('127.0.0.1', 'localhost')]: { authorization: 'Bearer for-localhost-only' },
      }),
      'test',
    );

    expect(await get(`${authed.origin}/private/img`, store.headersFor(`${authed.origin}/private/img`))).toEqual(body);
    expect(authed.seen.at(-1)!.headers).toMatchObject({ authorization: SECRET, 'x-api-key': 'k-s3cr3t', cookie: 'sid=s3cr3t' });

    await get(`${authed.origin}/private/hop`, store.headersFor(`${authed.origin}/private/hop`));
    expect(authed.seen.slice(-2).map((s) => [s.path, s.headers.authorization])).toEqual([
      ['/private/hop', SECRET],
      ['/private/img', SECRET],
    ]);

    // Same host, another port: another origin. It sees the request, never a credential.
    expect(await get(`${authed.origin}/private/away`, store.headersFor(`${authed.origin}/private/away`))).toEqual(body);
    expect(authed.seen.at(-1)!.headers.authorization).toBe(SECRET);
    const hop = other.seen.at(-1)!;
    expect(hop.path).toBe('/img');
    expect(hop.headers.authorization).toBeUndefined();
    expect(hop.headers['x-api-key']).toBeUndefined();
    expect(hop.headers.cookie).toBeUndefined();
    expect(hop.headers['user-agent']).toBe('fleetq'); // the other headers do go on

    // The store is looked up for the job's URL only: the other origin's entry (for "localhost") is not sent to 127.0.0.1 either.
    expect(store.headersFor(`${other.origin}/img`)).toBeUndefined();
    expect(store.headersFor(`${authed.origin}/public/img`)).toBeUndefined();
    await get(`${authed.origin}/public/img`, store.headersFor(`${authed.origin}/public/img`));
    expect(authed.seen.at(-1)!.headers.authorization).toBeUndefined();
  });
});
