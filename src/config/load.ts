/**
 * Environment + command-line overrides → a frozen, validated Config.
 * The first bad value becomes a ConfigError naming the variable (or flag).
 */
import { ConfigError } from '../lib/errors.js';
import { redactUrl } from '../lib/redact.js';
import { type Config, ConfigSchema, ENV_VARS, SECRET_KEYS } from './schema.js';

export type ConfigOverrides = { [K in keyof Config]?: unknown };

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: ConfigOverrides = {}): Config {
  const raw: Record<string, unknown> = {};
  const source: Record<string, string> = {};
  for (const [key, variable] of Object.entries(ENV_VARS)) {
    const value = env[variable];
    if (value !== undefined && value !== '') {
      raw[key] = value;
      source[key] = variable;
    }
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) {
      raw[key] = value;
      source[key] = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    }
  }
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const name = source[key] ?? ENV_VARS[key as keyof Config] ?? key;
    const shown = raw[key] === undefined ? '' : SECRET_KEYS.has(key as keyof Config) ? ' (value not shown: a secret)' : ` (got ${redactUrl(JSON.stringify(raw[key]))})`; // a URL's credentials are never echoed
    throw new ConfigError(`invalid ${name}${shown}: ${issue.message}`, name);
  }
  return Object.freeze(parsed.data);
}
