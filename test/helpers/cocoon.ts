/** Helpers around test/fixtures/fake-cocoon: snapshots, invocation log, fault control. */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FAKE_COCOON = fileURLToPath(new URL('../fixtures/fake-cocoon', import.meta.url));

export function plantSnapshot(root: string, name: string, snap: { image: string; image_digest?: string; vm?: string; cpu?: number; memory?: string; storage?: string; nics?: number }): void {
  mkdirSync(join(root, 'snapshots'), { recursive: true });
  writeFileSync(join(root, 'snapshots', `${name}.json`), JSON.stringify({ name, image_type: 'cloudimg', ...snap }));
}

export function cocoonCalls(root: string): Array<{ pid: number; argv: string[] }> {
  const f = join(root, 'fake-cocoon.calls');
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

export function setCocoonFault(root: string, fault: { sleepMs?: number; exitCode?: number; stderr?: string; killSelf?: string; only?: string } | undefined): void {
  const f = join(root, 'fake-cocoon.control.json');
  if (fault) writeFileSync(f, JSON.stringify(fault));
  else rmSync(f, { force: true });
}

export function vmRecord(root: string, name: string): Record<string, any> | undefined {
  const f = join(root, 'vms', `${name}.json`);
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : undefined;
}
