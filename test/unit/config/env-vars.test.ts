/**
 * Configuration is read through the schema only: every variable fleetq reads
 * is in config/schema.ts (ENV_VARS) and in README's configuration table, and
 * no module but config loading, the CLI's environment assembly and the cocoon
 * child's environment touches process.env.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ENV_VARS } from '../../../src/config/schema.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

describe('environment variables', () => {
  it("README's configuration table lists exactly the schema's variables", () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1));
    const listed = [...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]).sort();
    expect(listed).toEqual([...Object.values(ENV_VARS)].sort());
  });

  it('only config loading, the CLI environment and child-process environments read process.env', () => {
    const allowed = ['src/config/load.ts', 'src/cli/context.ts', 'src/restore/cocoon-cli.ts', 'src/restore/run-cocoon.ts'];
    const readers = sources(join(root, 'src'))
      .filter((f) => /process\.env/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(root, f))
      .sort();
    expect(readers.filter((f) => !allowed.includes(f))).toEqual([]);
  });
});
