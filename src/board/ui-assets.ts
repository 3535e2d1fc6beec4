/**
 * Bull Board's page template loads IBM Plex from fonts.googleapis.com: that
 * breaks on air-gapped sites and tells Google every operator's address. The
 * supported way round it is `uiBasePath`: the board renders
 * `<uiBasePath>/dist/index.ejs` and serves `<uiBasePath>/dist/static`. At
 * start-up we make a private copy (mkdtemp, 0700) of the *installed*
 * `@bull-board/ui` template with every external <link>/<script> removed, and
 * link its `static/` to the installed one, so asset hashes always match the
 * installed version (nothing to regenerate on upgrade). The CSS falls back to
 * system-ui fonts. The page's CSP (server.ts) forbids any other origin anyway.
 */
import { mkdtemp, readFile, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface OfflineUi {
  /** Pass as createBullBoard's options.uiBasePath. */
  uiBasePath: string;
  /** External references removed from the template (for the start-up log). */
  removed: string[];
  cleanup(): Promise<void>;
}

const EXTERNAL_TAG = /<(link|script)\b[^>]*\b(?:href|src)\s*=\s*["']?(?:https?:)?\/\/[^>]*>(?:\s*<\/script>)?\s*/gi;

export function installedUiDir(): string {
  return dirname(createRequire(import.meta.url).resolve('@bull-board/ui/package.json'));
}

/** The template with every tag that loads from another origin removed. */
export function stripExternal(template: string): { html: string; removed: string[] } {
  const removed: string[] = [];
  const html = template.replace(EXTERNAL_TAG, (tag) => {
    removed.push(tag.trim());
    return '';
  });
  return { html, removed };
}

export async function prepareOfflineUi(uiDir = installedUiDir()): Promise<OfflineUi> {
  const template = await readFile(join(uiDir, 'dist', 'index.ejs'), 'utf8');
  const { html, removed } = stripExternal(template);
  const base = await mkdtemp(join(tmpdir(), 'fleetq-board-ui-'));
  try {
    await mkdir(join(base, 'dist'));
    await writeFile(join(base, 'dist', 'index.ejs'), html, { mode: 0o600 });
    await symlink(join(uiDir, 'dist', 'static'), join(base, 'dist', 'static'), 'dir');
  } catch (err) {
    await rm(base, { recursive: true, force: true });
    throw err;
  }
  return { uiBasePath: base, removed, cleanup: () => rm(base, { recursive: true, force: true }) };
}
