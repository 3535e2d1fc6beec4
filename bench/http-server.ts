/**
 * The loopback upstream of the benchmarks, in its own process so that its CPU
 * is not mixed with the bench's: serves the files of one directory from disk
 * with a fixed 64 KiB read buffer, counts GETs per path, and reports its own
 * CPU time on GET /__stats.
 *
 *   node dist/bench/http-server.js DIR   → prints {"port":N} on stdout when listening
 *
 * Both sides of every comparison (fleetq and curl) download from this one
 * process, so a slow server slows both and shows up as a high CPU share.
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: http-server.js DIR\n');
  process.exit(2);
}
const READ_BUFFER = 64 * 1024;

const gets = new Map<string, number>();
let bytesSent = 0;
let active = 0;
const started = Date.now();

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]!;
  if (path === '/__stats') {
    const body = JSON.stringify({ cpu: process.cpuUsage(), gets: Object.fromEntries(gets), bytesSent, active, uptimeMs: Date.now() - started });
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
  const stream = createReadStream(join(dir, name!), { highWaterMark: READ_BUFFER });
  stream.on('data', (chunk) => (bytesSent += chunk.length));
  stream.on('error', () => res.destroy());
  res.on('close', () => {
    active--;
    stream.destroy();
  });
  stream.pipe(res);
});

server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, pid: process.pid })}\n`);
});
// The bench closes our stdin when it is done (or dies): exit with it.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
