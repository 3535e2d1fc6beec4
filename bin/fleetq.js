#!/usr/bin/env node
// (Flag: see src/worker/node-flags.ts.)
// Entry point for `npx fleetq`: runs the compiled CLI (built by `npm ci` via the prepare script).
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('fleetq: not built yet: run `npm run build` (npm ci does it for you)\n');
  process.exit(1);
}
await import(main.href);
