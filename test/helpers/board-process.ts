/** A real `fleetq board` process on a free port. */
import { spawn } from 'node:child_process';
import { freePort } from '../../src/lib/free-port.js';
import { childExit } from '../../src/lib/child-exit.js';
import { BIN } from './worker-process.js';

export interface BoardProcess {
  url: string;
  port: number;
  stderr: () => string;
  /** The board's JSON log lines (stdout) so far. */
  logs: () => Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startBoardProcess(env: Record<string, string>, args: string[] = []): Promise<BoardProcess> {
  const port = await freePort();
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL') clean[k] = v;
  const p = spawn(process.execPath, [BIN, 'board', '--port', String(port), ...args], { env: { ...clean, FLEETQ_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = childExit(p);
  await new Promise<void>((resolve, reject) => {
    const check = () => err.includes('board at ') && resolve();
    p.stderr.on('data', check);
    exited.then(([code]) => reject(new Error(`board exited ${code}: ${err}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stderr: () => err,
    logs: () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return { msg: l };
          }
        }),
    async stop() {
      p.kill('SIGTERM');
      await exited;
    },
  };
}

export function basic(user: string, password: string): { authorization: string } {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}

/**
 * What a same-origin caller sends with a write: the XSRF-TOKEN cookie the
 * board hands out on any GET, echoed in X-XSRF-TOKEN (as Bull Board's UI does).
 */
export async function sameOrigin(board: BoardProcess, auth: Record<string, string> = {}): Promise<Record<string, string>> {
  const r = await fetch(`${board.url}/api/queues`, { headers: auth });
  const cookie = r.headers.getSetCookie().find((c) => c.startsWith('XSRF-TOKEN='));
  if (!cookie) throw new Error(`no XSRF-TOKEN cookie from ${board.url} (status ${r.status})`);
  const token = cookie.slice('XSRF-TOKEN='.length).split(';', 1)[0]!;
  return { ...auth, cookie: `XSRF-TOKEN=${token}`, 'x-xsrf-token': decodeURIComponent(token), origin: board.url };
}
