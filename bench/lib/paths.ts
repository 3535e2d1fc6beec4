/** Where things are, seen from the compiled bench (dist/bench/lib/*.js) or the sources (bench/lib/*.ts). */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'fleetq.js'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error('cannot find the fleetq repository root from the bench script');
}

export const REPO = findRepoRoot();
export const BIN = join(REPO, 'bin', 'fleetq.js');
export const FAKE_COCOON = join(REPO, 'test', 'fixtures', 'fake-cocoon');
/** Compiled bench scripts (child processes are started from here). */
export const DIST_BENCH = join(REPO, 'dist', 'bench');
export const RESULTS_FILE = join(REPO, 'bench', 'results.json');
