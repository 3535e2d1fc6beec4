/**
 * The JSON cocoon prints (`../shared/reference/cocoon-cli.md` §5, §7), as zod
 * schemas: only the fields fleetq reads are declared, the rest pass through.
 * Pure. cocoon's output is still input: a digest is validated before it can
 * become a path, a URL before it can be fetched.
 */
import { z } from 'zod';

/** `types.VM` from `vm inspect`, `vm clone -o json`, `vm restore -o json`. */
export const CocoonVm = z.looseObject({
  id: z.string().min(1),
  state: z.string(),
  config: z
    .looseObject({
      name: z.string().optional(),
      image: z.string().optional(),
      image_digest: z.string().optional(),
    })
    .default({}),
  pid: z.number().optional(),
  created_at: z.string().optional(),
  snapshot_ids: z.record(z.string(), z.unknown()).optional(),
});
export type CocoonVm = z.infer<typeof CocoonVm>;

/** `types.Snapshot` from `snapshot inspect`. */
export const CocoonSnapshot = z.looseObject({
  id: z.string().min(1),
  name: z.string().optional(),
  image: z.string().optional(),
  image_digest: z.string().optional(),
  image_type: z.string().optional(),
  image_blob_ids: z.record(z.string(), z.unknown()).optional(),
  nics: z.number().optional(),
});
export type CocoonSnapshot = z.infer<typeof CocoonSnapshot>;

/** cocoon's VM states (`stopped (stale)` is how inspect shows a dead PID of a `running` record). */
export type VmState = 'creating' | 'created' | 'running' | 'stopped' | 'error' | (string & {});

/** Parse one JSON document printed by cocoon; undefined when stdout is not that document (help text, empty…). */
export function parseCocoonJson<S extends z.ZodType>(schema: S, stdout: string): z.output<S> | undefined {
  const text = stdout.trim();
  if (!text.startsWith('{')) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

/**
 * `snapshot ls --format json` (§7): a JSON array of snapshot records, or the
 * line `No snapshots found.` (printed even with --format json). Elements that
 * are not snapshot records are counted and left out. Undefined when stdout is
 * neither (help text, a cocoon without the command…).
 */
export function parseSnapshotList(stdout: string): { snapshots: CocoonSnapshot[]; invalid: number } | undefined {
  const text = stdout.trim();
  if (text === 'No snapshots found.') return { snapshots: [], invalid: 0 };
  if (!text.startsWith('[')) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(json)) return undefined;
  const snapshots: CocoonSnapshot[] = [];
  let invalid = 0;
  for (const item of json) {
    const parsed = CocoonSnapshot.safeParse(item);
    if (parsed.success) snapshots.push(parsed.data);
    else invalid++;
  }
  return { snapshots, invalid };
}
