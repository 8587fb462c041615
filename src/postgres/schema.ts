/**
 * The PostgreSQL schema of the sessions: tables, the functions that commit,
 * take leases, delete and clean up in one statement each, and the statements
 * the engine and the backend run. Everything lives in one schema (default
 * `sessionkv`) and every table's primary key leads with the session
 * `(bot_id, session_id)`, so the tables can be distributed by `session_id` on
 * Citus unchanged.
 *
 * Ids are `bytea` (their UTF-8 bytes): PostgreSQL `text` cannot hold the NUL
 * character that a session id may contain, and `bytea` compares bytewise, so
 * listings come out in the same order everywhere. Keys are `bytea` too: it
 * compares like `memcmp`, which is the order of encoded Deno KV keys.
 *
 * @module
 */

/** The schema version this release writes, kept as the `sessions` table's comment. */
export const PG_SCHEMA_VERSION = 1;

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Validates a schema name: lower-case letters, digits and `_`, as PostgreSQL
 * folds unquoted names, at most 63 characters.
 *
 * @throws {TypeError} On any other name.
 */
export function validateSchemaName(schema: unknown): asserts schema is string {
  if (typeof schema !== "string" || !IDENT.test(schema)) {
    throw new TypeError(
      `schema must be a lower-case SQL identifier (a-z, 0-9, _; at most 63 characters): received "${
        String(schema)
      }"`,
    );
  }
}

/** The marker that says the schema is complete at {@linkcode PG_SCHEMA_VERSION}. */
export function schemaMarker(): string {
  return `sessionkv schema ${PG_SCHEMA_VERSION}`;
}

/**
 * The DDL that creates the schema, idempotently (`IF NOT EXISTS`,
 * `CREATE OR REPLACE`). Run under an advisory lock so that concurrent
 * creators do not race.
 */
export function schemaDdl(schema: string): string {
  const s = `"${schema}"`;
  const live = "(kv.exp IS NULL OR kv.exp > p_now)";
  return `
CREATE SCHEMA IF NOT EXISTS ${s};

-- One row per session: its commit counter (the versionstamp), the newest
-- write (for cleanup), the next expiry (when to sweep) and the queue's id counter.
CREATE TABLE IF NOT EXISTS ${s}.sessions (
  bot_id bytea NOT NULL,
  session_id bytea NOT NULL,
  version bigint NOT NULL DEFAULT 0,
  last_activity bigint NOT NULL,
  next_exp bigint,
  msg_seq bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (bot_id, session_id)
);

-- The entries: encoded key, encoded value and its encoding, commit version, expiry (epoch ms).
CREATE TABLE IF NOT EXISTS ${s}.kv (
  bot_id bytea NOT NULL,
  session_id bytea NOT NULL,
  k bytea NOT NULL,
  v bytea NOT NULL,
  enc smallint NOT NULL,
  version bigint NOT NULL,
  exp bigint,
  PRIMARY KEY (bot_id, session_id, k)
);
CREATE INDEX IF NOT EXISTS kv_exp ON ${s}.kv (bot_id, session_id, exp) WHERE exp IS NOT NULL;

-- The queue: deliverable from ready_at; a listener claims a message until deadline.
CREATE TABLE IF NOT EXISTS ${s}.queue (
  bot_id bytea NOT NULL,
  session_id bytea NOT NULL,
  id bigint NOT NULL,
  ready_at bigint NOT NULL,
  payload bytea NOT NULL,
  backoff text NOT NULL,
  undelivered bytea NOT NULL,
  deadline bigint,
  PRIMARY KEY (bot_id, session_id, id)
);

-- Leases: one holder per session until expires_at (the server's clock), renewed while held.
CREATE TABLE IF NOT EXISTS ${s}.leases (
  bot_id bytea NOT NULL,
  session_id bytea NOT NULL,
  holder uuid NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (bot_id, session_id)
);

-- A commit: locks the session row (commits serialise per session only),
-- evaluates the checks (-1 when one fails) and the guards of sum/min/max
-- (-2: the value read before changed, the caller retries), sweeps expired
-- rows when one is due, then writes everything under one new version.
CREATE OR REPLACE FUNCTION ${s}.kv_commit(
  p_bot bytea, p_sess bytea, p_now bigint, p_step integer, p_bump boolean,
  c_keys bytea[], c_vers bigint[], g_keys bytea[], g_vers bigint[],
  s_keys bytea[], s_vals bytea[], s_encs smallint[], s_exps bigint[], s_vs boolean[],
  d_keys bytea[],
  q_ready bigint[], q_payloads bytea[], q_backoff text[], q_undelivered bytea[],
  p_ack bigint
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_version bigint;
  v_next_exp bigint;
  v_seq bigint;
  v_stamp bytea;
BEGIN
  SELECT version, next_exp, msg_seq INTO v_version, v_next_exp, v_seq
    FROM ${s}.sessions WHERE bot_id = p_bot AND session_id = p_sess FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    INSERT INTO ${s}.sessions (bot_id, session_id, last_activity)
      VALUES (p_bot, p_sess, p_now) ON CONFLICT DO NOTHING;
    SELECT version, next_exp, msg_seq INTO v_version, v_next_exp, v_seq
      FROM ${s}.sessions WHERE bot_id = p_bot AND session_id = p_sess FOR NO KEY UPDATE;
  END IF;
  IF cardinality(c_keys) > 0 AND EXISTS (
    SELECT 1 FROM unnest(c_keys, c_vers) AS c(k, ver)
    LEFT JOIN ${s}.kv ON kv.bot_id = p_bot AND kv.session_id = p_sess AND kv.k = c.k AND ${live}
    WHERE kv.version IS DISTINCT FROM c.ver
  ) THEN
    RETURN -1;
  END IF;
  IF cardinality(g_keys) > 0 AND EXISTS (
    SELECT 1 FROM unnest(g_keys, g_vers) AS g(k, ver)
    LEFT JOIN ${s}.kv ON kv.bot_id = p_bot AND kv.session_id = p_sess AND kv.k = g.k AND ${live}
    WHERE kv.version IS DISTINCT FROM g.ver
  ) THEN
    RETURN -2;
  END IF;
  IF v_next_exp IS NOT NULL AND v_next_exp <= p_now THEN
    DELETE FROM ${s}.kv WHERE bot_id = p_bot AND session_id = p_sess AND exp <= p_now;
    SELECT min(exp) INTO v_next_exp FROM ${s}.kv
      WHERE bot_id = p_bot AND session_id = p_sess AND exp IS NOT NULL;
  END IF;
  IF cardinality(s_exps) > 0 THEN
    v_next_exp := least(v_next_exp, (SELECT min(e) FROM unnest(s_exps) AS e));
  END IF;
  IF p_bump THEN
    v_version := v_version + p_step;
  END IF;
  UPDATE ${s}.sessions
    SET version = v_version, last_activity = greatest(last_activity, p_now),
        next_exp = v_next_exp, msg_seq = v_seq + cardinality(q_ready)
    WHERE bot_id = p_bot AND session_id = p_sess;
  IF cardinality(d_keys) > 0 THEN
    DELETE FROM ${s}.kv WHERE bot_id = p_bot AND session_id = p_sess AND k = ANY (d_keys);
  END IF;
  IF cardinality(s_keys) > 0 THEN
    v_stamp := '\\x02'::bytea || convert_to(lpad(to_hex(v_version), 16, '0') || '0000', 'UTF8')
      || '\\x00'::bytea;
    INSERT INTO ${s}.kv AS t (bot_id, session_id, k, v, enc, version, exp)
      SELECT p_bot, p_sess, CASE WHEN w.vs THEN w.k || v_stamp ELSE w.k END, w.v, w.enc,
             v_version, w.exp
        FROM unnest(s_keys, s_vals, s_encs, s_exps, s_vs) AS w(k, v, enc, exp, vs)
    ON CONFLICT (bot_id, session_id, k) DO UPDATE
      SET v = excluded.v, enc = excluded.enc, version = excluded.version, exp = excluded.exp;
  END IF;
  IF cardinality(q_ready) > 0 THEN
    INSERT INTO ${s}.queue (bot_id, session_id, id, ready_at, payload, backoff, undelivered)
      SELECT p_bot, p_sess, v_seq + q.n, q.r, q.p, q.b, q.u
        FROM unnest(q_ready, q_payloads, q_backoff, q_undelivered) WITH ORDINALITY
          AS q(r, p, b, u, n);
  END IF;
  IF p_ack IS NOT NULL THEN
    DELETE FROM ${s}.queue WHERE bot_id = p_bot AND session_id = p_sess AND id = p_ack;
  END IF;
  RETURN v_version;
END
$fn$;

-- Takes the lease when it is free or expired. The session row is share-locked
-- first, so a cleanup deleting the session either finishes before (and the
-- session starts afresh) or sees the lease.
CREATE OR REPLACE FUNCTION ${s}.lease_take(
  p_bot bytea, p_sess bytea, p_holder uuid, p_ttl_ms bigint
) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
  v_ok boolean;
BEGIN
  PERFORM 1 FROM ${s}.sessions WHERE bot_id = p_bot AND session_id = p_sess FOR KEY SHARE;
  INSERT INTO ${s}.leases AS l (bot_id, session_id, holder, expires_at)
    VALUES (p_bot, p_sess, p_holder, clock_timestamp() + p_ttl_ms * interval '1 millisecond')
  ON CONFLICT (bot_id, session_id) DO UPDATE
    SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE l.expires_at <= clock_timestamp()
  RETURNING true INTO v_ok;
  RETURN coalesce(v_ok, false);
END
$fn$;

-- Deletes one session unless a live lease holds it.
CREATE OR REPLACE FUNCTION ${s}.delete_session(p_bot bytea, p_sess bytea)
RETURNS text LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM 1 FROM ${s}.sessions WHERE bot_id = p_bot AND session_id = p_sess FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 'absent';
  END IF;
  IF EXISTS (SELECT 1 FROM ${s}.leases WHERE bot_id = p_bot AND session_id = p_sess
             AND expires_at > clock_timestamp()) THEN
    RETURN 'busy';
  END IF;
  DELETE FROM ${s}.kv WHERE bot_id = p_bot AND session_id = p_sess;
  DELETE FROM ${s}.queue WHERE bot_id = p_bot AND session_id = p_sess;
  DELETE FROM ${s}.leases WHERE bot_id = p_bot AND session_id = p_sess;
  DELETE FROM ${s}.sessions WHERE bot_id = p_bot AND session_id = p_sess;
  RETURN 'deleted';
END
$fn$;

-- Deletes a batch of sessions that are still idle at the cutoff and not
-- leased: locks them first (in key order, so cleanups never deadlock), then
-- re-checks idleness and leases with a fresh snapshot, and deletes every row
-- of each. Returns what was deleted and the bytes it held.
CREATE OR REPLACE FUNCTION ${s}.cleanup_batch(p_bots bytea[], p_sess bytea[], p_cutoff bigint)
RETURNS TABLE (bot_id bytea, session_id bytea, bytes bigint) LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM 1 FROM ${s}.sessions AS x
    JOIN unnest(p_bots, p_sess) AS c(b, s) ON x.bot_id = c.b AND x.session_id = c.s
    WHERE x.last_activity <= p_cutoff
    ORDER BY x.bot_id, x.session_id
    FOR UPDATE OF x;
  RETURN QUERY
  WITH d AS (
    DELETE FROM ${s}.sessions AS x USING unnest(p_bots, p_sess) AS c(b, s)
     WHERE x.bot_id = c.b AND x.session_id = c.s AND x.last_activity <= p_cutoff
       AND NOT EXISTS (SELECT 1 FROM ${s}.leases AS l
                        WHERE l.bot_id = x.bot_id AND l.session_id = x.session_id
                          AND l.expires_at > clock_timestamp())
    RETURNING x.bot_id, x.session_id
  ), dk AS (
    DELETE FROM ${s}.kv AS t USING d
     WHERE t.bot_id = d.bot_id AND t.session_id = d.session_id
    RETURNING t.bot_id, t.session_id, pg_column_size(t.k) + pg_column_size(t.v) AS n
  ), dq AS (
    DELETE FROM ${s}.queue AS t USING d
     WHERE t.bot_id = d.bot_id AND t.session_id = d.session_id
    RETURNING t.bot_id, t.session_id, pg_column_size(t.payload) AS n
  ), dl AS (
    -- Expired leases (a data-modifying CTE runs whether or not it is read).
    DELETE FROM ${s}.leases AS t USING d
     WHERE t.bot_id = d.bot_id AND t.session_id = d.session_id
  ), sizes AS (
    SELECT z.bot_id, z.session_id, sum(z.n)::bigint AS n
      FROM (SELECT * FROM dk UNION ALL SELECT * FROM dq) AS z
     GROUP BY z.bot_id, z.session_id
  )
  SELECT d.bot_id, d.session_id, coalesce(sizes.n, 0)::bigint
    FROM d LEFT JOIN sizes ON sizes.bot_id = d.bot_id AND sizes.session_id = d.session_id;
END
$fn$;

COMMENT ON TABLE ${s}.sessions IS '${schemaMarker()}';
`;
}

/** The statements of one schema, built once. */
export interface Statements {
  marker: string;
  openSession: string;
  get: string;
  getMany: string;
  listAsc: string;
  listDesc: string;
  readForCommit: string;
  commit: string;
  dequeue: string;
  nextDelivery: string;
  extendMessage: string;
  retryMessage: string;
  changeToken: string;
  sweep: string;
  leaseTake: string;
  leaseRenew: string;
  leaseRelease: string;
  sessionsPage: string;
  sessionsPageOfBot: string;
  deleteSession: string;
  cleanupCandidates: string;
  cleanupBatch: string;
}

/** Builds the statements for `schema` (already validated). */
export function statements(schema: string): Statements {
  const s = `"${schema}"`;
  const session = "bot_id = $1 AND session_id = $2";
  const live = "(exp IS NULL OR exp > $4)";
  const leased = (t: string) =>
    `EXISTS (SELECT 1 FROM ${s}.leases AS l WHERE l.bot_id = ${t}.bot_id
       AND l.session_id = ${t}.session_id AND l.expires_at > clock_timestamp())`;
  const size = (t: string) =>
    `coalesce((SELECT sum(pg_column_size(kv.k) + pg_column_size(kv.v)) FROM ${s}.kv AS kv
        WHERE kv.bot_id = ${t}.bot_id AND kv.session_id = ${t}.session_id), 0)
     + coalesce((SELECT sum(pg_column_size(q.payload)) FROM ${s}.queue AS q
        WHERE q.bot_id = ${t}.bot_id AND q.session_id = ${t}.session_id), 0)`;
  const page = (where: string) =>
    `SELECT x.bot_id, x.session_id, x.last_activity, (${size("x")})::bigint AS size,
            ${leased("x")} AS leased
       FROM ${s}.sessions AS x WHERE ${where}
      ORDER BY x.bot_id, x.session_id LIMIT $3`;
  return {
    marker: `SELECT obj_description(to_regclass('${s}.sessions'), 'pg_class') AS marker`,
    openSession: `INSERT INTO ${s}.sessions (bot_id, session_id, last_activity)
      VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    get: `SELECT v, enc, version, exp FROM ${s}.kv WHERE ${session} AND k = $3 AND ${live}`,
    getMany: `SELECT k, v, enc, version, exp FROM ${s}.kv
      WHERE ${session} AND k = ANY ($3::bytea[]) AND ${live}`,
    listAsc: `SELECT k, v, enc, version FROM ${s}.kv
      WHERE ${session} AND k >= $3 AND k < $5 AND ${live} ORDER BY k LIMIT $6`,
    listDesc: `SELECT k, v, enc, version FROM ${s}.kv
      WHERE ${session} AND k >= $3 AND k < $5 AND ${live} ORDER BY k DESC LIMIT $6`,
    readForCommit: `SELECT k, v, enc, version FROM ${s}.kv
      WHERE ${session} AND k = ANY ($3::bytea[]) AND ${live}`,
    commit: `SELECT ${s}.kv_commit($1, $2, $3, $4, $5, $6::bytea[], $7::bigint[], $8::bytea[],
      $9::bigint[], $10::bytea[], $11::bytea[], $12::smallint[], $13::bigint[], $14::boolean[],
      $15::bytea[], $16::bigint[], $17::bytea[], $18::text[], $19::bytea[], $20) AS version`,
    // An uncorrelated scalar subquery runs once (a join with a LIMIT
    // subquery may be rescanned and claim several messages).
    dequeue: `UPDATE ${s}.queue SET deadline = $3::bigint + $4::bigint
      WHERE ${session} AND id = (SELECT id FROM ${s}.queue
        WHERE ${session} AND ready_at <= $3 AND (deadline IS NULL OR deadline <= $3)
        ORDER BY ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING id, payload, backoff, undelivered`,
    nextDelivery: `SELECT min(greatest(ready_at, coalesce(deadline, 0))) AS at
      FROM ${s}.queue WHERE ${session}`,
    extendMessage: `UPDATE ${s}.queue SET deadline = $4 WHERE ${session} AND id = $3`,
    retryMessage: `UPDATE ${s}.queue SET ready_at = $4, backoff = $5, deadline = NULL
      WHERE ${session} AND id = $3`,
    changeToken: `SELECT version FROM ${s}.sessions WHERE ${session}`,
    sweep: `WITH d AS (DELETE FROM ${s}.kv WHERE ${session} AND exp <= $3 RETURNING 1)
      UPDATE ${s}.sessions SET next_exp = (SELECT min(exp) FROM ${s}.kv
        WHERE ${session} AND exp > $3)
      WHERE ${session} RETURNING (SELECT count(*) FROM d) AS n`,
    leaseTake: `SELECT ${s}.lease_take($1, $2, $3, $4) AS ok`,
    leaseRenew: `UPDATE ${s}.leases
      SET expires_at = clock_timestamp() + $4 * interval '1 millisecond'
      WHERE ${session} AND holder = $3 RETURNING 1 AS ok`,
    leaseRelease: `DELETE FROM ${s}.leases WHERE ${session} AND holder = $3`,
    sessionsPage: page("(x.bot_id, x.session_id) > ($1, $2)"),
    sessionsPageOfBot: page("x.bot_id = $1 AND x.session_id > $2"),
    deleteSession: `SELECT ${s}.delete_session($1, $2) AS result`,
    cleanupCandidates: `SELECT x.bot_id, x.session_id, ${leased("x")} AS leased,
        CASE WHEN $5 THEN (${size("x")})::bigint ELSE 0 END AS size
       FROM ${s}.sessions AS x
      WHERE (x.bot_id, x.session_id) > ($1, $2) AND x.last_activity <= $3
      ORDER BY x.bot_id, x.session_id LIMIT $4`,
    cleanupBatch: `SELECT bot_id, session_id, bytes FROM ${s}.cleanup_batch(
      $1::bytea[], $2::bytea[], $3)`,
  };
}
