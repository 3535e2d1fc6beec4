/**
 * vitest globalSetup: integration and e2e tests run the compiled `dist/`
 * (worker processes, the CLI, the board), so build it before any test runs:
 * plain `npx vitest` never tests stale code. `npm test` has no pretest build;
 * this is the one build of a run.
 *
 * Skipped when dist/ is fresh: every file `tsc -p tsconfig.build.json` writes
 * exists and is newer than every input (the files its config includes, the
 * config files and package.json), whoever built it (`npm ci`'s prepare,
 * `npm run build`, an earlier run). Any edit, checkout or stash touches an
 * input's mtime and brings the build back. FLEETQ_TEST_BUILD=always forces it.
 */
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIG = join(ROOT, 'tsconfig.build.json');

function mtime(file: string): number {
  return statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? Number.POSITIVE_INFINITY;
}

/** The build's inputs and the files it writes, as tsc sees them. */
function buildPlan(): { inputs: string[]; outputs: string[] } {
  const read = ts.readConfigFile(CONFIG, ts.sys.readFile);
  if (read.error) throw new Error(`tsconfig.build.json: ${ts.flattenDiagnosticMessageText(read.error.messageText, '\n')}`);
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, undefined, CONFIG);
  const configs = [CONFIG, join(ROOT, 'tsconfig.json'), join(ROOT, 'package.json')];
  const outDir = parsed.options.outDir ?? ROOT;
  const rootDir = parsed.options.rootDir ?? ROOT;
  const outputs = parsed.fileNames.filter((f) => !f.endsWith('.d.ts')).map((f) => join(outDir, relative(rootDir, f)).replace(/\.[cm]?tsx?$/, '.js'));
  return { inputs: [...configs, ...parsed.fileNames], outputs };
}

export default function setup(): void {
  const { inputs, outputs } = buildPlan();
  const newestInput = Math.max(...inputs.map(mtime));
  const oldestOutput = Math.min(...outputs.map((f) => statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? Number.NEGATIVE_INFINITY));
  if (process.env.FLEETQ_TEST_BUILD !== 'always' && oldestOutput > newestInput) {
    process.stderr.write(`[globalSetup] dist/ is newer than its ${inputs.length} inputs: not rebuilding\n`);
    return;
  }
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const started = performance.now();
  try {
    execFileSync(process.execPath, [tsc, '-p', CONFIG], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`the build the tests run (tsc -p tsconfig.build.json) failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
  process.stderr.write(`[globalSetup] built dist/ (tsc -p tsconfig.build.json) in ${((performance.now() - started) / 1000).toFixed(1)}s\n`);
}
