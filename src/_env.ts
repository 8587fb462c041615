/**
 * Reading `SESSIONKV_*` environment variables with validation. Private: used
 * by `cleanupSettingsFromEnv()`, the CLI and `SessionStore.fromEnv()`.
 *
 * Every reader takes an optional `env` lookup so callers (and tests) can pass
 * a plain object instead of the process environment. Reading the real
 * environment needs `--allow-env`.
 *
 * @module
 */

/** Looks a variable up; `undefined` when it is not set. */
export type EnvLookup = (name: string) => string | undefined;

/** The process environment (needs `--allow-env` for the names read). */
export const processEnv: EnvLookup = (name) => Deno.env.get(name);

/** Turns a plain object into an {@linkcode EnvLookup}. */
export function envFrom(record: Record<string, string | undefined>): EnvLookup {
  return (name) => Object.hasOwn(record, name) ? record[name] : undefined;
}

function raw(env: EnvLookup, name: string): string | undefined {
  const value = env(name)?.trim();
  return value === undefined || value === "" ? undefined : value;
}

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off"]);

/**
 * A boolean variable: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`
 * (any case). Unset or empty gives `fallback`.
 *
 * @throws {TypeError} On any other value.
 */
export function envBoolean(env: EnvLookup, name: string, fallback: boolean): boolean {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const lower = value.toLowerCase();
  if (TRUE.has(lower)) return true;
  if (FALSE.has(lower)) return false;
  throw new TypeError(
    `${name} must be true or false (1/0, yes/no, on/off): received "${value}"`,
  );
}

/** Constraints of {@linkcode envNumber}. */
export interface NumberRule {
  /** Only whole numbers. */
  integer?: boolean;
  /** Zero is allowed (otherwise the value must be positive). */
  allowZero?: boolean;
}

/**
 * A number variable. Unset or empty gives `fallback`.
 *
 * @throws {TypeError} When the value is not a decimal number.
 * @throws {RangeError} When it is negative, zero (unless allowed), not whole
 *   (when required) or not finite.
 */
export function envNumber<F extends number | undefined>(
  env: EnvLookup,
  name: string,
  fallback: F,
  rule: NumberRule = {},
): number | F {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(value)) {
    throw new TypeError(`${name} must be a number: received "${value}"`);
  }
  const n = Number(value);
  if (!Number.isFinite(n)) throw new RangeError(`${name} must be finite: received "${value}"`);
  if (rule.integer && !Number.isInteger(n)) {
    throw new RangeError(`${name} must be a whole number: received "${value}"`);
  }
  if (n < 0 || (n === 0 && !rule.allowZero)) {
    throw new RangeError(
      `${name} must be ${rule.allowZero ? "zero or more" : "positive"}: received "${value}"`,
    );
  }
  return n;
}

/**
 * One of `choices` (any case). Unset or empty gives `undefined`.
 *
 * @throws {TypeError} On any other value.
 */
export function envChoice<C extends string>(
  env: EnvLookup,
  name: string,
  choices: readonly C[],
): C | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  const lower = value.toLowerCase();
  if ((choices as readonly string[]).includes(lower)) return lower as C;
  throw new TypeError(`${name} must be ${choices.join(" or ")}: received "${value}"`);
}

/** Store settings read from the environment, from {@linkcode storeOptionsFromEnv}. */
export interface StoreEnvOptions {
  /** `SESSIONKV_ROOT`, default `./data/sessions`. */
  root: string;
  /** `SESSIONKV_WAL`, when set. */
  wal?: boolean;
  /** `SESSIONKV_BUSY_TIMEOUT_MS`, when set. */
  busyTimeoutMs?: number;
}

/** The default of `SESSIONKV_ROOT`. */
export const DEFAULT_ROOT = "./data/sessions";

/**
 * Reads `SESSIONKV_ROOT`, `SESSIONKV_WAL` and `SESSIONKV_BUSY_TIMEOUT_MS`.
 * Unset variables are left out, so the store's own defaults apply.
 *
 * @throws {TypeError} When `SESSIONKV_WAL` is not a boolean or
 *   `SESSIONKV_BUSY_TIMEOUT_MS` not a number.
 * @throws {RangeError} When `SESSIONKV_BUSY_TIMEOUT_MS` is not positive.
 */
export function storeOptionsFromEnv(env: EnvLookup = processEnv): StoreEnvOptions {
  const options: StoreEnvOptions = { root: raw(env, "SESSIONKV_ROOT") ?? DEFAULT_ROOT };
  if (raw(env, "SESSIONKV_WAL") !== undefined) {
    options.wal = envBoolean(env, "SESSIONKV_WAL", true);
  }
  const busy = envNumber(env, "SESSIONKV_BUSY_TIMEOUT_MS", undefined);
  if (busy !== undefined) options.busyTimeoutMs = busy;
  return options;
}
