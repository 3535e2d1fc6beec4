/** JSON.parse for values read back from Redis: undefined for nothing or for text that is not JSON (the caller's zod schema decides the rest). */
export function safeJson(v: string | null | undefined): unknown {
  if (v === null || v === undefined) return undefined;
  try {
    return JSON.parse(v);
  } catch {
    return undefined;
  }
}
