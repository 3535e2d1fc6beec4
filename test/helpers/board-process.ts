/** A real `fleetq board` process on a free port. */
import { spawn } from 'node:child_process';
import { freePort } from '../../src/lib/free-port.js';
import { childExit } from '../../src/lib/child-exit.js';
import { BIN } from './worker-process.js';

export interface BoardProcess {
  url: string;
  port: number;
  stderr: () => string;
  stop(): Promise<void>;
}

export async function startBoardProcess(env: Record<string, string>, args: string[] = []): Promise<BoardProcess> {
  const port = await freePort();
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL') clean[k] = v;
  const p = spawn(process.execPath, [BIN, 'board', '--port', String(port), ...args], { env: { ...clean, FLEETQ_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  p.stdout.resume();
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
    async stop() {
      p.kill('SIGTERM');
      await exited;
    },
  };
}

export function basic(user: string, password: string): { authorization: string } {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}
