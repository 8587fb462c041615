/**
 * The error of the PostgreSQL backend that callers are expected to catch.
 *
 * @module
 */
import type { SessionKvErrorOptions } from "../errors.ts";

/**
 * Thrown when the PostgreSQL server cannot be reached or dropped the
 * connection (refused, reset, timed out, shutting down, too many
 * connections). The driver's error is the `cause`. A read may simply be
 * tried again; a commit that failed this way may or may not have been
 * applied, as with any database.
 */
export class PostgresUnavailableError extends Error {
  /** The driver's or server's code, e.g. `ECONNREFUSED`, `CONNECTION_CLOSED`, `57P01`. */
  readonly code: string;
  /**
   * Makes the error.
   *
   * @param message What failed and where.
   * @param code The driver's or server's code.
   * @param options The cause.
   */
  constructor(message: string, code: string, options?: SessionKvErrorOptions) {
    super(message, options);
    this.name = "PostgresUnavailableError";
    this.code = code;
  }
}
