/** Start the loopback HTTP server child (dist/bench/http-server.js) and read its counters. */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { childExit } from '../../src/lib/child-exit.js';
import { DIST_BENCH } from './paths.js';
import { spawnTracked, stopChild } from './procs.js';

export interface ServerStats {
  /** process.cpuUsage() of the server, µs. */
  cpu: { user: number; system: number };
  gets: Record<string, number>;
  bytesSent: number;
  active: number;
  /** The server's --rate (bytes/s, all responses together), null when unthrottled. */
  rate: number | null;
}

export interface BenchHttpServer {
  port: number;
  pid: number;
  proc: ChildProcess;
  url(name: string): string;
  stats(): Promise<ServerStats>;
  stop(): Promise<void>;
}

/**
 * `rate`: bytes per second for the whole server (every connection together),
 * a WAN link in front of the image server; unthrottled when absent.
 */
export async function startHttpServer(dir: string, opts: { rate?: number } = {}): Promise<BenchHttpServer> {
  const args = [join(DIST_BENCH, 'http-server.js'), dir, ...(opts.rate !== undefined ? ['--rate', String(Math.round(opts.rate))] : [])];
  const proc = spawnTracked(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = childExit(proc);
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`http server did not start within 10s: ${stderr}`)), 10_000);
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        resolve((JSON.parse(buf.slice(0, nl)) as { port: number }).port);
      }
    });
    void exited.then(([code]) => reject(new Error(`http server exited with ${code}: ${stderr}`)));
  });
  proc.stdout!.resume();
  const base = `http://127.0.0.1:${port}`;
  return {
    port,
    pid: proc.pid!,
    proc,
    url: (name) => `${base}/${name}`,
    async stats() {
      const res = await fetch(`${base}/__stats`, { signal: AbortSignal.timeout(10_000) });
      return (await res.json()) as ServerStats;
    },
    async stop() {
      proc.stdin!.end();
      await stopChild(proc, 5_000);
    },
  };
}

/** Server CPU seconds and GETs between two stats snapshots. */
export function statsDelta(before: ServerStats, after: ServerStats): { cpuSec: number; gets: Record<string, number>; totalGets: number } {
  const cpuSec = (after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / 1e6;
  const gets: Record<string, number> = {};
  let totalGets = 0;
  for (const [path, n] of Object.entries(after.gets)) {
    const d = n - (before.gets[path] ?? 0);
    if (d > 0) {
      gets[path] = d;
      totalGets += d;
    }
  }
  return { cpuSec, gets, totalGets };
}
