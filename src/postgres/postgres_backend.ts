/**
 * `PostgresBackend`: every session in one PostgreSQL schema, shared by any
 * number of processes and hosts through a connection pool. See
 * `../../postgres.ts` for the schema and its use.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type {
  BackendEngine,
  BackendHold,
  BackendSessionInfo,
  CleanupRun,
  LeaseRequest,
  SessionBackend,
  SessionRef,
} from "../backend.ts";
import { encodeId } from "../session_id.ts";
import { idBytes, type PgContext, PgEngine } from "./pg_engine.ts";
import {
  schemaDdl,
  schemaMarker,
  type Statements,
  statements,
  validateSchemaName,
} from "./schema.ts";
import {
  byteaArray,
  mapError,
  num,
  openPool,
  query,
  redactUrl,
  type Row,
  type Sql,
} from "./_sql.ts";
import postgres from "postgres";

const logger = getLogger(["sessionkv", "postgres"]);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const decoder = new TextDecoder();

/** Sessions looked at per statement by `sessions()` and `cleanup()`. */
const PAGE = 500;

/** Options of {@linkcode postgresBackend}. */
export interface PostgresBackendOptions {
  /**
   * The server, as a `postgres://user:password@host:port/database` URL
   * (`?sslmode=require` and the other options of `npm:postgres` work).
   */
  url: string;
  /**
   * The schema that holds the tables, created on first use. Lower-case
   * letters, digits and `_`.
   * @default {"sessionkv"}
   */
  schema?: string;
  /**
   * Most connections in the pool. Engines hold none: every operation borrows
   * one for a single statement.
   * @default {10}
   */
  max?: number;
  /**
   * How long a lease lives without renewal. The holder renews it every third
   * of this; a holder that dies (killed, partitioned) frees the session
   * after at most this long.
   * @default {10000}
   */
  leaseTtlMs?: number;
  /**
   * How long a statement waits for a row lock (another host's commit to the
   * same session) before failing with `SessionBusyError` (`lock_timeout`).
   * @default {5000}
   */
  lockTimeoutMs?: number;
  /**
   * How long connecting may take before `PostgresUnavailableError`.
   * @default {10000}
   */
  connectTimeoutMs?: number;
  /**
   * An unused pooled connection is closed after this long.
   * @default {30000}
   */
  idleTimeoutMs?: number;
}

/** Options of {@linkcode dropSchema}. */
export interface DropSchemaOptions {
  /** The server's URL. */
  url: string;
  /** The schema to drop, with every session in it. */
  schema: string;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number: received ${String(value)}`);
  }
  if (value <= 0 || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a positive number: received ${value}`);
  }
  return value;
}

/**
 * Sessions in PostgreSQL. Make one with {@linkcode postgresBackend} and give
 * it to `new SessionStore({ backend })`; the store closes it.
 */
export class PostgresBackend {
  readonly #sql: Sql;
  readonly #schema: string;
  readonly #st: Statements;
  readonly #location: string;
  readonly #leaseTtlMs: number;
  readonly #ctx: PgContext;
  #ready: Promise<void> | undefined;
  #closed = false;
  /** Leases held by this backend: their renewal stops and rows go on close. */
  readonly #leases = new Set<() => Promise<void>>();

  /**
   * Makes the backend. Connects lazily, on first use.
   *
   * @param options The server and tuning options.
   * @throws {TypeError} On a missing URL or a bad schema name.
   * @throws {RangeError} On a numeric option out of range.
   */
  constructor(options: PostgresBackendOptions) {
    const { url } = options ?? {};
    if (typeof url !== "string" || url.length === 0) {
      throw new TypeError(`url must be a non-empty string: received ${String(url)}`);
    }
    const schema = options.schema ?? "sessionkv";
    validateSchemaName(schema);
    const max = positive("max", options.max, 10);
    if (!Number.isInteger(max)) throw new RangeError(`max must be an integer: received ${max}`);
    this.#leaseTtlMs = positive("leaseTtlMs", options.leaseTtlMs, 10_000);
    this.#schema = schema;
    this.#st = statements(schema);
    this.#location = `${redactUrl(url)}#${schema}`;
    this.#sql = openPool(url, {
      max,
      lockTimeoutMs: positive("lockTimeoutMs", options.lockTimeoutMs, 5000),
      connectTimeoutMs: positive("connectTimeoutMs", options.connectTimeoutMs, 10_000),
      idleTimeoutMs: positive("idleTimeoutMs", options.idleTimeoutMs, 30_000),
    });
    this.#ctx = { sql: this.#sql, st: this.#st, location: this.#location };
  }

  /** The server's address without password, and the schema after `#`. */
  get location(): string {
    return this.#location;
  }

  /** The schema that holds the tables. */
  get schema(): string {
    return this.#schema;
  }

  /** Creates the schema on first use (once per backend). */
  #ensureSchema(): Promise<void> {
    this.#ready ??= createSchema(this.#sql, this.#schema, this.#st).catch((error) => {
      this.#ready = undefined;
      throw mapError(error, this.#location);
    });
    return this.#ready;
  }

  async #query(text: string, params: unknown[]): Promise<Row[]> {
    await this.#ensureSchema();
    try {
      return await query(this.#sql, text, params);
    } catch (error) {
      throw mapError(error, this.#location);
    }
  }

  /**
   * Nothing to hold across hosts: sessions in use elsewhere are told by their leases.
   *
   * @ignore Part of the `SessionBackend` seam, called by `SessionStore`.
   */
  pin(_ref: SessionRef): Promise<BackendHold> {
    return Promise.resolve({ release() {} });
  }

  /**
   * Ensures the session's row exists (so `sessions()` lists it) and returns its engine.
   *
   * @ignore Part of the `SessionBackend` seam, called by `SessionStore`.
   */
  async open(ref: SessionRef): Promise<BackendEngine> {
    await this.#query(this.#st.openSession, [
      idBytes(ref.botId),
      idBytes(ref.sessionId),
      Date.now(),
    ]);
    return new PgEngine(this.#ctx, ref);
  }

  /**
   * Takes the session's lease row (free or expired), polling until the
   * deadline, and renews it every third of `leaseTtlMs` until released.
   *
   * @ignore Part of the `SessionBackend` seam, called by `SessionStore`.
   */
  async lease(ref: SessionRef, request: LeaseRequest): Promise<BackendHold> {
    const bot = idBytes(ref.botId);
    const session = idBytes(ref.sessionId);
    const holder = crypto.randomUUID();
    const ttl = this.#leaseTtlMs;
    let delay = 2;
    for (;;) {
      request.signal?.throwIfAborted();
      request.assertOpen();
      const [row] = await this.#query(this.#st.leaseTake, [bot, session, holder, ttl]);
      if (row?.ok === true) break;
      if (Date.now() >= request.deadline) throw request.timeout();
      await sleep(Math.min(delay, Math.max(1, request.deadline - Date.now())));
      delay = Math.min(delay * 2, 25);
    }
    const renew = async () => {
      try {
        const rows = await query(this.#sql, this.#st.leaseRenew, [bot, session, holder, ttl]);
        if (rows.length === 0) {
          logger.error("Lease on {botId}/{sessionId} was lost: it expired before renewal", {
            ...ref,
          });
          clearInterval(timer);
        }
      } catch (error) {
        logger.warn("Renewing the lease on {botId}/{sessionId} failed: {error}", {
          ...ref,
          error,
        });
      }
    };
    const timer = setInterval(renew, Math.max(1, Math.floor(ttl / 3)));
    Deno.unrefTimer(timer);
    let released: Promise<void> | undefined;
    const release = () => {
      released ??= (async () => {
        clearInterval(timer);
        this.#leases.delete(release);
        try {
          await query(this.#sql, this.#st.leaseRelease, [bot, session, holder]);
        } catch (error) {
          // It expires by itself.
          logger.warn("Releasing the lease on {botId}/{sessionId} failed: {error}", {
            ...ref,
            error,
          });
        }
      })();
      return released;
    };
    this.#leases.add(release);
    return { release };
  }

  /**
   * Streams the sessions table in key order, 500 rows per statement.
   *
   * @ignore Part of the `SessionBackend` seam, called by `SessionStore`.
   */
  async *sessions(botId: string | undefined): AsyncIterable<BackendSessionInfo> {
    const bot = botId === undefined ? undefined : idBytes(botId);
    let after: [Uint8Array, Uint8Array] = [new Uint8Array(0), new Uint8Array(0)];
    for (;;) {
      const rows = bot === undefined
        ? await this.#query(this.#st.sessionsPage, [after[0], after[1], PAGE])
        : await this.#query(this.#st.sessionsPageOfBot, [bot, after[1], PAGE]);
      for (const r of rows) {
        const b = decoder.decode(r.bot_id as Uint8Array);
        const s = decoder.decode(r.session_id as Uint8Array);
        yield {
          botId: b,
          sessionId: s,
          path: this.#path({ botId: b, sessionId: s }),
          sizeBytes: num(r.size),
          lastActivity: new Date(num(r.last_activity)),
          openElsewhere: r.leased === true,
        };
      }
      if (rows.length < PAGE) return;
      const last = rows[rows.length - 1]!;
      after = [last.bot_id as Uint8Array, last.session_id as Uint8Array];
    }
  }

  #path(ref: SessionRef): string {
    return `${this.#location}/${encodeId(ref.botId)}/${encodeId(ref.sessionId)}`;
  }

  /**
   * Deletes every row of the session in one transaction, unless a live lease holds it.
   *
   * @ignore Part of the `SessionBackend` seam, called by `SessionStore`.
   */
  async deleteSession(ref: SessionRef): Promise<"deleted" | "absent" | "busy"> {
    const [row] = await this.#query(this.#st.deleteSession, [
      idBytes(ref.botId),
      idBytes(ref.sessionId),
    ]);
    return row!.result as "deleted" | "absent" | "busy";
  }

  /**
   * Walks the sessions idle at the cutoff in pages of 500 (in key order,
   * reading only the primary key's index and the rows), skips those leased
   * anywhere or in use in this process, and deletes the rest of each page in
   * one statement that re-checks idleness and leases under row locks.
   *
   * @ignore Part of the `SessionBackend` seam, called by `SessionStore`.
   */
  async cleanup(run: CleanupRun): Promise<void> {
    const { tally, dryRun } = run;
    let after: [Uint8Array, Uint8Array] = [new Uint8Array(0), new Uint8Array(0)];
    for (;;) {
      run.check();
      const rows = await this.#query(this.#st.cleanupCandidates, [
        after[0],
        after[1],
        run.cutoffMs,
        PAGE,
        dryRun,
      ]);
      const doomed: { bot: Uint8Array; session: Uint8Array; ref: SessionRef }[] = [];
      for (const r of rows) {
        run.check();
        const ref = {
          botId: decoder.decode(r.bot_id as Uint8Array),
          sessionId: decoder.decode(r.session_id as Uint8Array),
        };
        tally.scanned++;
        const local = run.local(ref);
        if (r.leased === true || local?.inUse) {
          tally.skippedInUse++;
        } else if (dryRun) {
          tally.deleted++;
          tally.bytesFreed += num(r.size);
        } else {
          // Idle here: forget its engine (it reopens if used again).
          if (local?.open) await local.close();
          doomed.push({ bot: r.bot_id as Uint8Array, session: r.session_id as Uint8Array, ref });
          continue; // Progress is reported once the page's statement ran.
        }
        run.progress();
      }
      if (doomed.length > 0) {
        try {
          const deleted = await this.#query(this.#st.cleanupBatch, [
            byteaArray(doomed.map((d) => d.bot)),
            byteaArray(doomed.map((d) => d.session)),
            run.cutoffMs,
          ]);
          tally.deleted += deleted.length;
          for (const d of deleted) tally.bytesFreed += num(d.bytes);
          logger.debug("Cleanup deleted {count} sessions", { count: deleted.length });
        } catch (error) {
          for (const d of doomed) {
            tally.errors.push({ path: this.#path(d.ref), message: (error as Error).message });
          }
        }
        for (const _ of doomed) run.progress();
      }
      if (rows.length < PAGE) return;
      const last = rows[rows.length - 1]!;
      after = [last.bot_id as Uint8Array, last.session_id as Uint8Array];
    }
  }

  /** Releases leases still held, then ends the pool (waiting up to 5 s for running statements). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#leases].map((release) => release()));
    await this.#sql.end({ timeout: 5 });
  }
}

/** The class is a `SessionBackend` (not declared: the seam's types stay out of its docs). */
const _conforms = (backend: PostgresBackend): SessionBackend => backend;

/**
 * Creates the schema unless it is complete: under a transaction-scoped
 * advisory lock, so that concurrent creators wait for each other instead of
 * racing on `CREATE ... IF NOT EXISTS`.
 */
async function createSchema(sql: Sql, schema: string, st: Statements): Promise<void> {
  const marker = schemaMarker();
  const [found] = await query(sql, st.marker, []);
  if (found?.marker === marker) return;
  await sql.begin(async (tx) => {
    await tx.unsafe("SELECT pg_advisory_xact_lock(hashtext($1))", [`sessionkv:${schema}`]);
    const [again] = await tx.unsafe(st.marker);
    if (again?.marker === marker) return;
    await tx.unsafe(schemaDdl(schema)).simple();
  });
  logger.info("Created PostgreSQL schema {schema}", { schema });
}

/**
 * Drops a schema made by {@linkcode postgresBackend} with every session in
 * it (`DROP SCHEMA ... CASCADE`). For tests and teardown.
 *
 * @param options The server's URL and the schema.
 * @throws {TypeError} On a bad schema name.
 * @throws {PostgresUnavailableError} When the server cannot be reached.
 */
export async function dropSchema(options: DropSchemaOptions): Promise<void> {
  validateSchemaName(options.schema);
  const sql = postgres(options.url, { max: 1, onnotice: () => {}, fetch_types: false });
  try {
    await sql.unsafe(`DROP SCHEMA IF EXISTS "${options.schema}" CASCADE`);
  } catch (error) {
    throw mapError(error, redactUrl(options.url));
  } finally {
    await sql.end({ timeout: 5 });
  }
}
