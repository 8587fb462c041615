/**
 * The same `SessionStore` on PostgreSQL, for several agent servers sharing
 * one database: `SessionKv`, `acquire()` leases, `cleanup()`, `sessions()`
 * and the LangGraph `SessionCheckpointSaver` work unchanged; moving from
 * SQLite files is one line.
 *
 * ```ts ignore
 * import { SessionStore } from "@sessionkv/core";
 * import { postgresBackend } from "@sessionkv/core/postgres";
 *
 * await using store = new SessionStore({
 *   backend: postgresBackend({ url: "postgres://app@db.internal:5432/agents" }),
 * });
 * using kv = await store.openKv("support-bot", "user-42");
 * await kv.set(["messages", 1], { role: "user", text: "hi" });
 * ```
 *
 * The driver is `npm:postgres` with a connection pool (`max` connections,
 * default 10); an open session holds no connection, every operation borrows
 * one for a single statement. Permissions: `--allow-net` to the server (and
 * `--allow-env`, `--allow-read` where the URL's TLS options need them).
 *
 * ## Schema
 *
 * Created on first use, idempotently, in the schema named by `schema`
 * (default `sessionkv`), under an advisory lock. Ids are stored as their UTF-8
 * bytes (`bytea`: `text` cannot hold NUL, which an id may contain), keys as
 * the encoded Deno KV key (`bytea` compares like `memcmp`, which is Deno KV's
 * key order), values with Deno KV's encodings.
 *
 * | table | columns | primary key |
 * | --- | --- | --- |
 * | `sessions` | `version` (the commit counter behind versionstamps), `last_activity` (epoch ms of the newest commit), `next_exp`, `msg_seq` | `(bot_id, session_id)` |
 * | `kv` | `k`, `v`, `enc`, `version`, `exp` (epoch ms or NULL) | `(bot_id, session_id, k)` |
 * | `queue` | `id`, `ready_at`, `payload`, `backoff`, `undelivered`, `deadline` | `(bot_id, session_id, id)` |
 * | `leases` | `holder`, `expires_at` (server clock) | `(bot_id, session_id)` |
 *
 * plus the functions `kv_commit`, `lease_take`, `delete_session` and
 * `cleanup_batch`, so that each commit, lease attempt, deletion and cleanup
 * page is one statement (one round trip).
 *
 * A commit locks its session's `sessions` row (`FOR NO KEY UPDATE`) and
 * nothing else shared, so commits serialise per session only: sessions never
 * contend with each other, as with one file per session. Reads are single
 * statements (one snapshot), and an expired row is invisible from the moment
 * it expires; expired rows are deleted by the session's next commit that
 * finds one due, and with the session.
 *
 * ### Distributing with Citus
 *
 * Every primary key leads with the session, and every statement names one
 * session, except `sessions()` and `cleanup()` pages, which walk the
 * `sessions` table. The tables can therefore be distributed by
 * `session_id`, co-located, without change (create the schema with one
 * `postgresBackend` first, then):
 *
 * ```sql
 * SELECT create_distributed_table('sessionkv.sessions', 'session_id');
 * SELECT create_distributed_table('sessionkv.kv', 'session_id', colocate_with => 'sessionkv.sessions');
 * SELECT create_distributed_table('sessionkv.queue', 'session_id', colocate_with => 'sessionkv.sessions');
 * SELECT create_distributed_table('sessionkv.leases', 'session_id', colocate_with => 'sessionkv.sessions');
 * SELECT create_distributed_function('sessionkv.kv_commit(bytea,bytea,bigint,integer,boolean,bytea[],bigint[],bytea[],bigint[],bytea[],bytea[],smallint[],bigint[],boolean[],bytea[],bigint[],bytea[],text[],bytea[],bigint)', 'p_sess', colocate_with => 'sessionkv.sessions');
 * SELECT create_distributed_function('sessionkv.lease_take(bytea,bytea,uuid,bigint)', 'p_sess', colocate_with => 'sessionkv.sessions');
 * SELECT create_distributed_function('sessionkv.delete_session(bytea,bytea)', 'p_sess', colocate_with => 'sessionkv.sessions');
 * ```
 *
 * ## Across hosts
 *
 * - `acquire()` is first come, first served within a process (the store's
 *   queue) and exclusive across processes and hosts through a `leases` row
 *   with an expiry on the server's clock, renewed every third of
 *   `leaseTtlMs` while held and deleted on release. A holder that dies frees
 *   the session after at most `leaseTtlMs`.
 * - A session counts as in use elsewhere (`sessions()`'s `open`, and for
 *   `cleanup()` and `deleteSession()`) while another process leases it; views
 *   open in other processes are not tracked. Idleness is the newest commit
 *   (`last_activity`), so a session written to within the cutoff is kept
 *   wherever it is used. Sessions in use in this process are kept as with
 *   SQLite files.
 * - `cleanup()` walks the sessions idle at the cutoff in pages of 500 and
 *   deletes each page's unused ones in one statement that re-checks
 *   idleness and leases under row locks. `scanned` counts the idle sessions
 *   looked at (active ones are not read); `bytesFreed` is the stored size of
 *   their keys, values and messages.
 * - A lock held by another host's commit is waited for up to `lockTimeoutMs`
 *   (then `SessionBusyError`); an unreachable server gives
 *   {@linkcode PostgresUnavailableError}, with the driver's error as `cause`.
 *
 * @module
 */
import { PostgresBackend, type PostgresBackendOptions } from "./src/postgres/postgres_backend.ts";

export { dropSchema, PostgresBackend } from "./src/postgres/postgres_backend.ts";
export type { DropSchemaOptions, PostgresBackendOptions } from "./src/postgres/postgres_backend.ts";
export { PostgresUnavailableError } from "./src/postgres/errors.ts";

/**
 * Keeps a `SessionStore`'s sessions in PostgreSQL. Give the result to
 * `new SessionStore({ backend })`; the store closes it (and its pool) when
 * it closes. Nothing connects until the first session is used; the schema
 * and tables are then created if missing.
 *
 * @param options `url` of the server, and optionally `schema` (default
 *   `sessionkv`), `max` pooled connections (default 10), `leaseTtlMs`
 *   (default 10 s), `lockTimeoutMs` (default 5 s), `connectTimeoutMs`,
 *   `idleTimeoutMs`.
 * @returns The backend.
 * @throws {TypeError} On a missing URL or a schema name that is not a
 *   lower-case identifier.
 * @throws {RangeError} On a numeric option that is not positive.
 *
 * @example One store on PostgreSQL
 * ```ts ignore
 * import { SessionStore } from "@sessionkv/core";
 * import { postgresBackend } from "@sessionkv/core/postgres";
 * import { equal } from "node:assert/strict";
 *
 * const url = Deno.env.get("SESSIONKV_PG_URL")!; // postgres://user@127.0.0.1:5432/db
 * await using store = new SessionStore({ backend: postgresBackend({ url, max: 4 }) });
 * {
 *   await using lease = await store.acquire("support-bot", "user-42");
 *   const { versionstamp } = await lease.kv.set(["state"], "thinking");
 *   equal((await lease.kv.get(["state"])).versionstamp, versionstamp);
 * }
 * for await (const s of store.sessions({ botId: "support-bot" })) console.log(s.sessionId);
 * ```
 */
export function postgresBackend(options: PostgresBackendOptions): PostgresBackend {
  return new PostgresBackend(options);
}
