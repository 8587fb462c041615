/**
 * Helpers of the PostgreSQL backend: array literals built from bytes at call
 * time (so no caller's buffer is read later, when a queued query is sent),
 * the connection pool's settings, and error mapping.
 *
 * @module
 */
import postgres from "postgres";
import { SessionBusyError } from "../errors.ts";
import { PostgresUnavailableError } from "./errors.ts";

/** The pool: postgres.js with `bytea` read as plain `Uint8Array`s. */
export type Sql = postgres.Sql<Record<string, unknown>>;

/** A row as the pool returns it. */
export type Row = Record<string, unknown>;

/** Opens a pool (connections are made lazily, on first use). */
export function openPool(
  url: string,
  options: { max: number; lockTimeoutMs: number; connectTimeoutMs: number; idleTimeoutMs: number },
): Sql {
  return postgres(url, {
    max: options.max,
    // No type lookup on connect: arrays are sent as literals built here.
    fetch_types: false,
    onnotice: () => {},
    idle_timeout: Math.max(1, Math.ceil(options.idleTimeoutMs / 1000)),
    connect_timeout: Math.max(1, Math.ceil(options.connectTimeoutMs / 1000)),
    connection: {
      application_name: "sessionkv",
      lock_timeout: Math.round(options.lockTimeoutMs),
    },
    types: {
      bytea: {
        to: 17,
        from: [17],
        serialize: (x: Uint8Array) => "\\x" + x.toHex(),
        // A fresh, exact-size Uint8Array (not a Node Buffer): values of
        // Uint8Array type go to callers as they are.
        parse: (x: string) => Uint8Array.fromHex(x.slice(2)),
      },
    },
  }) as unknown as Sql;
}

/** Runs one prepared statement. */
export function query(sql: Sql, text: string, params: unknown[]): Promise<Row[]> {
  return sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], {
    prepare: true,
  }) as unknown as Promise<Row[]>;
}

/** A `bytea[]` literal. Reads the bytes now. */
export function byteaArray(list: readonly Uint8Array[]): string {
  if (list.length === 0) return "{}";
  let out = "{";
  for (let i = 0; i < list.length; i++) {
    out += (i === 0 ? '"\\\\x' : ',"\\\\x') + list[i]!.toHex() + '"';
  }
  return out + "}";
}

/** A `bigint[]`, `smallint[]` or `integer[]` literal; `null` is SQL NULL. */
export function intArray(list: readonly (number | null)[]): string {
  return "{" + list.map((n) => n === null ? "NULL" : String(n)).join(",") + "}";
}

/** A `boolean[]` literal. */
export function boolArray(list: readonly boolean[]): string {
  return "{" + list.map((b) => b ? "t" : "f").join(",") + "}";
}

/** A `text[]` literal. */
export function textArray(list: readonly string[]): string {
  return "{" +
    list.map((t) => '"' + t.replaceAll("\\", "\\\\").replaceAll('"', '\\"') + '"').join(",") +
    "}";
}

/** A bigint column (text from the driver) as a number. */
export function num(value: unknown): number {
  return typeof value === "number" ? value : Number(value);
}

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "EHOSTUNREACH",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
]);

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Whether the transaction failed only because of a concurrent one and may simply run again. */
export function isRetryable(error: unknown): boolean {
  const code = codeOf(error);
  return code === "40001" || code === "40P01";
}

/** Whether the server could not be reached or dropped the connection. */
export function isConnectionError(error: unknown): boolean {
  const code = codeOf(error);
  return code !== undefined && (CONNECTION_CODES.has(code) || code.startsWith("08"));
}

/**
 * Maps a driver error to what callers catch: `SessionBusyError` for a lock
 * that was not granted in time, `PostgresUnavailableError` for a server that
 * cannot be reached; anything else unchanged. The original is the `cause`.
 */
export function mapError(error: unknown, location: string): unknown {
  const code = codeOf(error);
  if (code === undefined) return error;
  const message = (error as Error).message;
  if (code === "55P03" || code === "57014") {
    return new SessionBusyError(`PostgreSQL lock not granted in time: ${message}`, {
      cause: error,
    });
  }
  if (isConnectionError(error)) {
    return new PostgresUnavailableError(
      `PostgreSQL at ${location} is unavailable: ${message}`,
      code,
      { cause: error },
    );
  }
  return error;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    u.search = "";
    return u.toString();
  } catch {
    return "postgres://(unparsable URL)";
  }
}
