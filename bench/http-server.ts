/**
 * The loopback upstream of the benchmarks, in its own process so that its CPU
 * is not mixed with the bench's: serves the files of one directory from disk
 * with a fixed 64 KiB read buffer, counts GETs per path, and reports its own
 * CPU time on GET /__stats.
 *
 *   node dist/bench/http-server.js DIR [--rate BYTES_PER_SECOND]
 *     → prints {"port":N,"pid":P} on stdout when listening
 *
 * --rate throttles the server as a whole, like a WAN link in front of an
 * image server: one token bucket (src/peer/rate-limiter.ts, a GCRA byte
 * budget with a 256 KiB burst) shared by every response, granted 64 KiB at a
 * time in the order asked, so N concurrent downloads share the rate (each
 * gets about rate / N) instead of each getting it.
 *
 * Both sides of every comparison (fleetq and curl) download from this one
 * process, so a slow server slows both and shows up as a high CPU share.
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { RateLimiter } from '../src/peer/rate-limiter.js';

const READ_BUFFER = 64 * 1024;
const BURST = 256 * 1024;

function parseArgs(argv: string[]): { dir: string; rate: number | undefined } {
  let dir: string | undefined;
  let rate: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--rate') {
      rate = Number(argv[++i]);
      if (!Number.isFinite(rate) || rate < 1024) usage(`--rate wants bytes per second (at least 1024), got ${argv[i]}`);
    } else if (!dir && !a.startsWith('-')) dir = a;
    else usage(`unknown argument ${a}`);
  }
  if (!dir) usage('no directory');
  return { dir, rate };
}

function usage(msg: string): never {
  process.stderr.write(`http-server.js: ${msg}\nusage: http-server.js DIR [--rate BYTES_PER_SECOND]\n`);
  process.exit(2);
}

const { dir, rate } = parseArgs(process.argv.slice(2));
const link = rate === undefined ? undefined : new RateLimiter(rate, BURST);

/** Passes chunks on once the shared link budget has room for them. */
function throttled(limiter: RateLimiter, signal: AbortSignal): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      limiter.take(chunk.length, signal).then(() => done(null, chunk), done);
    },
  });
}

const gets = new Map<string, number>();
let bytesSent = 0;
let active = 0;
const started = Date.now();

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]!;
  if (path === '/__stats') {
    const body = JSON.stringify({ cpu: process.cpuUsage(), gets: Object.fromEntries(gets), bytesSent, active, uptimeMs: Date.now() - started, rate: rate ?? null });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405).end();
    return;
  }
  if (req.method === 'GET') gets.set(path, (gets.get(path) ?? 0) + 1);
  // Only plain file names directly under DIR.
  const name = /^\/([A-Za-z0-9][A-Za-z0-9._-]*)$/.exec(path)?.[1];
  let size: number;
  try {
    if (!name) throw new Error('bad name');
    const st = statSync(join(dir, name));
    if (!st.isFile()) throw new Error('not a file');
    size = st.size;
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  active++;
  const gone = new AbortController();
  const stream = createReadStream(join(dir, name!), { highWaterMark: READ_BUFFER });
  stream.on('error', () => res.destroy());
  res.on('close', () => {
    active--;
    gone.abort();
    stream.destroy();
  });
  let out: NodeJS.ReadableStream = stream;
  if (link) {
    const gate = throttled(link, gone.signal);
    gate.on('error', () => res.destroy());
    out = stream.pipe(gate);
  }
  out.on('data', (chunk: Buffer) => (bytesSent += chunk.length));
  out.pipe(res);
});

server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, pid: process.pid })}\n`);
});
// The bench closes our stdin when it is done (or dies): exit with it.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
