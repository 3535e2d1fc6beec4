/**
 * The published job contract (docs/JOBS.md) in JSON Schema: generated here
 * from the zod schemas the worker validates with (`z.toJSONSchema`), and
 * compared with the files committed under docs/job-schema/, so they cannot go
 * stale. After changing a contract, regenerate them:
 *
 *   UPDATE_JOB_SCHEMA=1 npx vitest run test/unit/jobs/job-schema.test.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ImageUrl } from '../../../src/jobs/contracts/common.js';
import { ENSURE_IMAGE, EnsureImagePayload, EnsureImageResult } from '../../../src/jobs/contracts/ensure-image.js';
import { RESTORE, RestorePayload, RestoreResult } from '../../../src/jobs/contracts/restore.js';

const DIR = fileURLToPath(new URL('../../../docs/job-schema/', import.meta.url));

/**
 * Input side of each schema (what a producer sends; for results, what fleetq
 * returns with room for fields added later). A field whose zod check is code
 * (the URL rules, cocoon's size strings) shows only its JSON shape: the
 * worker still applies the whole contract, and docs/JOBS.md says so.
 */
function generate(schema: z.ZodType, title: string, description: string): Record<string, unknown> {
  const json = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io: 'input',
    unrepresentable: 'any',
    override: (ctx) => {
      if (ctx.zodSchema === ImageUrl) Object.assign(ctx.jsonSchema, { format: 'uri', description: 'absolute http(s) URL, no credentials (user:password@), no whitespace' });
    },
  }) as Record<string, unknown>;
  const { $schema, ...rest } = json;
  return { $schema, title, description, ...rest };
}

const JOB_SCHEMAS: Record<string, Record<string, unknown>> = {
  'ensure-image.payload.schema.json': generate(EnsureImagePayload, `${ENSURE_IMAGE} job data`, `Data of an "${ENSURE_IMAGE}" job on queue images-{<host>} (docs/JOBS.md).`),
  'ensure-image.result.schema.json': generate(EnsureImageResult, `${ENSURE_IMAGE} return value`, `Return value of a completed "${ENSURE_IMAGE}" job (docs/JOBS.md).`),
  'restore.payload.schema.json': generate(RestorePayload, `${RESTORE} job data`, `Data of a "${RESTORE}" job on queue restores-{<host>}; "kind" selects clone or restore (docs/JOBS.md).`),
  'restore.result.schema.json': generate(RestoreResult, `${RESTORE} return value`, `Return value of a completed "${RESTORE}" job (docs/JOBS.md).`),
};

const render = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

describe('docs/job-schema (JSON Schema of the job contract)', () => {
  if (process.env.UPDATE_JOB_SCHEMA === '1') {
    for (const [file, schema] of Object.entries(JOB_SCHEMAS)) writeFileSync(DIR + file, render(schema));
  }

  for (const [file, schema] of Object.entries(JOB_SCHEMAS)) {
    it(`${file} is what the zod schemas generate today`, () => {
      let committed: string;
      try {
        committed = readFileSync(DIR + file, 'utf8');
      } catch {
        throw new Error(`docs/job-schema/${file} is missing: run UPDATE_JOB_SCHEMA=1 npx vitest run test/unit/jobs/job-schema.test.ts`);
      }
      expect(committed, `docs/job-schema/${file} is stale: run UPDATE_JOB_SCHEMA=1 npx vitest run test/unit/jobs/job-schema.test.ts and commit it`).toBe(render(schema));
    });
  }

  it('says what producers need: required fields, no unknown fields, the digest pattern, restore kinds', () => {
    const ensure = JOB_SCHEMAS['ensure-image.payload.schema.json'] as any;
    expect(ensure.required).toEqual(['image']);
    expect(ensure.additionalProperties).toBe(false);
    expect(ensure.properties.imageDigest.pattern).toBe('^sha256:[0-9a-f]{64}$');
    expect(ensure.properties.image.format).toBe('uri');
    expect(ensure.properties.imageType).toMatchObject({ default: 'cloudimg', enum: ['cloudimg'] });

    const restore = JOB_SCHEMAS['restore.payload.schema.json'] as any;
    const kinds = restore.oneOf.map((s: any) => [s.properties.kind.const, s.required]);
    expect(kinds).toEqual([
      ['clone', ['kind', 'snapshot', 'name']],
      ['restore', ['kind', 'snapshot', 'vm']],
    ]);
    // image and imageDigest are optional for restores: the snapshot records its base image.
    for (const s of restore.oneOf) {
      expect(s.required).not.toContain('image');
      expect(s.required).not.toContain('imageDigest');
      expect(s.additionalProperties).toBe(false);
      // placement (`--host auto`): optional, and whole when present.
      expect(s.required).not.toContain('placement');
      expect(s.properties.placement).toMatchObject({ type: 'object', additionalProperties: false, required: ['host', 'reason', 'at', 'score', 'restoreQueue'] });
      expect(s.properties.placement.properties.digest.pattern).toBe('^sha256:[0-9a-f]{64}$');
    }

    // Results leave room for fields added later.
    expect((JOB_SCHEMAS['ensure-image.result.schema.json'] as any).additionalProperties).toBeUndefined();
    expect((JOB_SCHEMAS['ensure-image.result.schema.json'] as any).required).toEqual(['outcome', 'digest', 'path', 'size', 'bytesDownloaded', 'durationMs']);
  });
});
