/**
 * One session's storage in a `Deno.Kv`: the `KvEngine` of the Deno KV
 * backend.
 *
 * This module's KV semantics are kept on top of Deno KV: entries are
 * records with this module's version and expiry ({@linkcode EntryRecord}),
 * expired entries are hidden at once, and a commit is all or nothing.
 * Every commit reads the session's meta record and the rows it touches,
 * evaluates checks and `sum`/`min`/`max` here, and writes the rows, the new
 * meta record and the index entries in one Deno KV atomic operation that
 * checks the meta record's versionstamp: concurrent commits to one session
 * are serialised optimistically, and retried on conflict.
 *
 * A commit too large for one atomic operation (more than 1000 mutations,
 * 80 KiB of keys, 800 KiB in all) stays all or nothing: large values are
 * written first as chunks nobody points at yet, the other mutations as a
 * redo log, and then one atomic operation on the meta record decides the
 * commit. Until the log has been applied, every reader and writer of the
 * session applies it first (the writes are idempotent and checked against
 * the meta record's versionstamp), so no one sees a commit half done.
 *
 * Reads take one snapshot: a point read fetches the meta record in the same
 * `getMany`; a listing compares the meta record's versionstamp before and
 * after and reads again if a commit came between.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { compareBytes, withVersionstamp } from "../codec/key_codec.ts";
import { applyNumeric } from "../codec/numeric.ts";
import { type EncodedValue, serializeV8, type ValueEncoding } from "../codec/value_codec.ts";
import { versionStep } from "../codec/versionstamp.ts";
import type { BackendEngine, SessionRef } from "../backend.ts";
import type { CommitPlan, KvRow, QueuedMessage, ReadRange } from "../engine.ts";
import { SessionBusyError } from "../errors.ts";
import {
  commitAtomic,
  commitBatches,
  decodeLog,
  type DenoCheck,
  type DenoOp,
  encodeLog,
  fits,
} from "./_atomic.ts";
import { type DataKey, IDLE_BUCKET_MS, type Layout, type Meta, randomId } from "./_layout.ts";
import {
  decodeRecord,
  DENO_MAX_VALUE_BYTES,
  encodeRecord,
  type EntryRecord,
  recordSize,
} from "./_records.ts";

const logger = getLogger(["sessionkv", "denokv"]);

/** What an engine shares with its backend. */
export interface EngineContext {
  /** The user's Deno KV. */
  readonly kv: Deno.Kv;
  /** The key layout. */
  readonly layout: Layout;
  /** How long a commit retries on conflicts before `SessionBusyError`. */
  readonly retryTimeoutMs: number;
}

/** The meta record as read, with its versionstamp. */
interface Snapshot {
  meta: Meta;
  stamp: string;
}

/** A queued message's state record. */
interface MessageRecord {
  readyAt: number;
  /** Its place in the schedule: `deadline` while claimed, else `readyAt`. */
  at: number;
  backoff: number[];
  undelivered: Uint8Array[];
  deadline: number | null;
}

/** Read again: the state changed while reading. */
const RETRY: unique symbol = Symbol("retry");
type Retry = typeof RETRY;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function backoff(attempt: number): number {
  return Math.min(2 ** attempt, 50) * (0.5 + Math.random());
}

/** A map key for encoded key bytes. */
function hex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return compareBytes(a, b) === 0;
}

function live(record: EntryRecord | undefined, now: number): EntryRecord | undefined {
  if (record === undefined) return undefined;
  return record.expiresAt !== null && record.expiresAt <= now ? undefined : record;
}

/** The bucket of the idle index for a time. */
export function bucketOf(ms: number): number {
  return Math.floor(ms / IDLE_BUCKET_MS) * IDLE_BUCKET_MS;
}

/** Reads `keys` with `getMany` in batches of 10, in order. */
export async function readMany(
  kv: Deno.Kv,
  keys: readonly Deno.KvKey[],
): Promise<Deno.KvEntryMaybe<unknown>[]> {
  const out: Deno.KvEntryMaybe<unknown>[] = [];
  for (let i = 0; i < keys.length; i += 10) {
    out.push(...await kv.getMany(keys.slice(i, i + 10)));
  }
  return out;
}

/**
 * Reads the chunks of a large value.
 *
 * @returns The value, or `RETRY` when chunks are missing (the entry was
 *   overwritten meanwhile).
 */
async function readChunks(
  ctx: EngineContext,
  uid: number,
  chunks: NonNullable<EntryRecord["chunks"]>,
): Promise<Uint8Array | Retry> {
  const out = new Uint8Array(chunks.length);
  let pos = 0;
  let n = 0;
  for await (
    const e of ctx.kv.list<Uint8Array>({ prefix: ctx.layout.chunks(uid, chunks.id) }, {
      batchSize: Math.min(1000, chunks.count),
    })
  ) {
    if (e.key[e.key.length - 1] !== n || pos + e.value.length > out.length) return RETRY;
    out.set(e.value, pos);
    pos += e.value.length;
    n++;
  }
  return n === chunks.count && pos === chunks.length ? out : RETRY;
}

/** The Deno KV deletes of a chunked value's chunks. */
function chunkDeletes(ctx: EngineContext, uid: number, record: EntryRecord): DenoOp[] {
  const out: DenoOp[] = [];
  if (record.chunks === undefined) return out;
  for (let i = 0; i < record.chunks.count; i++) {
    out.push({ type: "delete", key: ctx.layout.chunk(uid, record.chunks.id, i) });
  }
  return out;
}

/**
 * Applies the redo log of a decided commit, as its writer or as a helper.
 * Each write checks the meta record's versionstamp, so a helper that comes
 * late (the log applied and cleared meanwhile) writes nothing.
 *
 * @returns The meta record's new versionstamp, or `undefined` when another
 *   writer finished first.
 */
export async function applyLog(
  ctx: EngineContext,
  metaKey: Deno.KvKey,
  meta: Meta,
  stamp: string,
): Promise<string | undefined> {
  const log = meta.log!;
  const { kv, layout } = ctx;
  const records: Uint8Array[] = [];
  for await (const e of kv.list<Uint8Array>({ prefix: layout.log(meta.uid, log.id) })) {
    records.push(e.value);
  }
  if (records.length !== log.chunks) return undefined; // Applied and removed meanwhile.
  const checks: DenoCheck[] = [{ key: metaKey, versionstamp: stamp }];
  if (await commitBatches(kv, checks, decodeLog(records)) === null) return undefined;
  const { log: _, ...done } = meta;
  const result = await commitAtomic(kv, checks, [{ type: "set", key: metaKey, value: done }]);
  if (!result.ok) return undefined;
  const deletes: DenoOp[] = records.map((_, i) => ({
    type: "delete",
    key: layout.logChunk(meta.uid, log.id, i),
  }));
  await commitBatches(kv, [], deletes);
  return result.versionstamp;
}

/** A session key a commit reads and may write. */
interface Touched {
  key: Uint8Array;
  data: DataKey;
  /** The stored record, also when expired (it is still on disk). */
  stored: EntryRecord | undefined;
  /** The live value as the plan has left it so far. */
  current: {
    encoding: ValueEncoding;
    bytes: Uint8Array | undefined;
    expiresAt: number | null;
    chunked?: EntryRecord;
  } | undefined;
  dirty: boolean;
}

/** A session's storage in a `Deno.Kv`. */
export class DenoKvEngine implements BackendEngine {
  readonly #ctx: EngineContext;
  readonly #ref: SessionRef;
  readonly #metaKey: Deno.KvKey;
  /** The meta record as last seen without a pending log. */
  #cache: Snapshot | undefined;
  /** The last commit of this engine, done or not. */
  #commits: Promise<unknown> = Promise.resolve();

  /**
   * @param ctx The Deno KV and layout.
   * @param ref The session.
   * @param meta The meta record, when already read.
   */
  constructor(ctx: EngineContext, ref: SessionRef, meta?: Snapshot) {
    this.#ctx = ctx;
    this.#ref = { botId: ref.botId, sessionId: ref.sessionId };
    this.#metaKey = ctx.layout.meta(ref);
    this.#cache = meta;
  }

  /** Reads the meta record, applying a pending log first. */
  async #load(): Promise<Snapshot | undefined> {
    for (;;) {
      const e = await this.#ctx.kv.get<Meta>(this.#metaKey);
      const snap = await this.#accept(e);
      if (snap !== RETRY) return snap;
    }
  }

  /** Takes a meta record read: caches it, or applies its pending log and asks to read again. */
  async #accept(e: Deno.KvEntryMaybe<Meta>): Promise<Snapshot | undefined | Retry> {
    if (e.versionstamp === null) {
      this.#cache = undefined;
      return undefined;
    }
    if (e.value.log !== undefined) {
      await applyLog(this.#ctx, this.#metaKey, e.value, e.versionstamp);
      return RETRY;
    }
    return this.#cache = { meta: e.value, stamp: e.versionstamp };
  }

  /** The row of a stored entry, or `RETRY` when its chunks vanished. */
  async #row(
    uid: number,
    key: Uint8Array,
    e: Deno.KvEntryMaybe<unknown>,
    now: number,
  ): Promise<KvRow | undefined | Retry> {
    if (e.versionstamp === null) return undefined;
    const record = live(decodeRecord(e.value as Uint8Array), now);
    if (record === undefined) return undefined;
    if (record.key !== undefined && !sameBytes(record.key, key)) return undefined;
    return await this.#rowOf(uid, key, record);
  }

  async #rowOf(uid: number, key: Uint8Array, record: EntryRecord): Promise<KvRow | Retry> {
    let value = record.value;
    if (value === undefined) {
      const read = await readChunks(this.#ctx, uid, record.chunks!);
      if (read === RETRY) return RETRY;
      value = read;
    }
    return [key, value, record.encoding, record.version, record.expiresAt];
  }

  /**
   * Runs a multi-request read and returns it once the meta record's
   * versionstamp was the same before and after it.
   */
  async #consistent<T>(empty: T, read: (uid: number) => Promise<T | Retry>): Promise<T> {
    const deadline = Date.now() + this.#ctx.retryTimeoutMs;
    for (let attempt = 0;; attempt++) {
      const before = this.#cache ?? await this.#load();
      if (before === undefined) return empty;
      const result = await read(before.meta.uid);
      const after = await this.#load();
      if (after === undefined) return empty;
      if (result !== RETRY && after.stamp === before.stamp) return result;
      if (Date.now() > deadline) throw this.#busy("reading");
      if (attempt > 2) await sleep(backoff(attempt));
    }
  }

  #busy(what: string): SessionBusyError {
    return new SessionBusyError(
      `Session "${this.#ref.sessionId}" of bot "${this.#ref.botId}" kept changing while ${what} for ${this.#ctx.retryTimeoutMs} ms`,
    );
  }

  async get(key: Uint8Array, now: number): Promise<KvRow | undefined> {
    return (await this.getMany([key], now))[0];
  }

  async getMany(keys: Uint8Array[], now: number): Promise<(KvRow | undefined)[]> {
    const { kv, layout } = this.#ctx;
    const none = keys.map(() => undefined);
    if (keys.length > 9) {
      return await this.#consistent(none, async (uid) => {
        const entries = await kv.getMany(keys.map((k) => layout.dataKey(uid, k).key));
        const rows: (KvRow | undefined)[] = [];
        for (let i = 0; i < keys.length; i++) {
          const row = await this.#row(uid, keys[i]!, entries[i]!, now);
          if (row === RETRY) return RETRY;
          rows.push(row);
        }
        return rows;
      });
    }
    // One snapshot: the meta record and the entries in one getMany.
    for (;;) {
      const snap = this.#cache ?? await this.#load();
      if (snap === undefined) return none;
      const uid = snap.meta.uid;
      const [m, ...entries] = await kv.getMany([
        this.#metaKey,
        ...keys.map((k) => layout.dataKey(uid, k).key),
      ]);
      const fresh = await this.#accept(m as Deno.KvEntryMaybe<Meta>);
      if (fresh === RETRY) continue;
      if (fresh === undefined) return none;
      if (fresh.meta.uid !== uid) continue;
      const rows: (KvRow | undefined)[] = [];
      let retry = false;
      for (let i = 0; i < keys.length; i++) {
        const row = await this.#row(uid, keys[i]!, entries[i]!, now);
        if (row === RETRY) {
          retry = true;
          break;
        }
        rows.push(row);
      }
      if (!retry) return rows;
    }
  }

  list(range: ReadRange, now: number): Promise<KvRow[]> {
    return this.#consistent<KvRow[]>([], (uid) => this.#list(uid, range, now));
  }

  async #list(uid: number, range: ReadRange, now: number): Promise<KvRow[] | Retry> {
    const { kv, layout } = this.#ctx;
    const base = layout.data(uid).length;
    const found: { key: Uint8Array; record: EntryRecord }[] = [];
    let group: { head: Uint8Array; rows: { key: Uint8Array; record: EntryRecord }[] } | undefined;
    const take = (key: Uint8Array, record: EntryRecord) => {
      if (
        compareBytes(key, range.start) >= 0 && compareBytes(key, range.end) < 0 &&
        live(record, now) !== undefined
      ) {
        found.push({ key, record });
      }
    };
    const flush = () => {
      if (group === undefined) return;
      const sign = range.reverse ? -1 : 1;
      group.rows.sort((a, b) => sign * compareBytes(a.key, b.key));
      for (const r of group.rows) take(r.key, r.record);
      group = undefined;
    };
    const iter = kv.list<Uint8Array>(layout.dataRange(uid, range.start, range.end), {
      reverse: range.reverse,
      batchSize: Math.min(1000, range.limit + 1),
    });
    for await (const e of iter) {
      const record = decodeRecord(e.value);
      if (e.key.length === base + 2) {
        // A long key: part of the group of its head.
        const head = e.key[base] as Uint8Array;
        if (group !== undefined && !sameBytes(group.head, head)) flush();
        if (found.length >= range.limit) break;
        group ??= { head, rows: [] };
        if (record.key !== undefined) group.rows.push({ key: record.key, record });
        continue;
      }
      flush();
      if (found.length >= range.limit) break;
      take(e.key[base] as Uint8Array, record);
      if (found.length >= range.limit) break;
    }
    flush();
    const rows: KvRow[] = [];
    for (const { key, record } of found.slice(0, range.limit)) {
      const row = await this.#rowOf(uid, key, record);
      if (row === RETRY) return RETRY;
      rows.push(row);
    }
    return rows;
  }

  /**
   * Commits in call order: this process's commits to the session wait for
   * each other (so they do not conflict among themselves); other writers
   * are serialised by the meta record's versionstamp check.
   */
  commit(plan: CommitPlan, now: number): Promise<number | null> {
    const run = this.#commits.then(() => this.#commit(plan, now));
    this.#commits = run.catch(() => undefined);
    return run;
  }

  async #commit(plan: CommitPlan, now: number): Promise<number | null> {
    const deadline = Date.now() + this.#ctx.retryTimeoutMs;
    for (let attempt = 0;; attempt++) {
      const result = await this.#tryCommit(plan, now);
      if (result !== RETRY) return result;
      if (Date.now() > deadline) throw this.#busy("committing");
      if (attempt > 0) await sleep(backoff(attempt));
    }
  }

  async #tryCommit(plan: CommitPlan, now: number): Promise<number | null | Retry> {
    const { kv, layout } = this.#ctx;
    const cached = this.#cache ?? await this.#load();
    let uid = cached?.meta.uid ?? randomId();

    // 1. Read the meta record and every row the plan touches.
    const touched = new Map<string, Touched>();
    const touch = (key: Uint8Array) => {
      const id = hex(key);
      let t = touched.get(id);
      if (t === undefined) {
        t = {
          key,
          data: layout.dataKey(uid, key),
          stored: undefined,
          current: undefined,
          dirty: false,
        };
        touched.set(id, t);
      }
      return t;
    };
    for (const c of plan.checks) touch(c.key);
    for (const m of plan.mutations) {
      if (!(m.type === "set" && m.versionstampKey)) touch(m.key);
    }
    // A session not created yet has no rows to read (and its uid is new).
    const list = cached === undefined ? [] : [...touched.values()];
    const keys: Deno.KvKey[] = [this.#metaKey, ...list.map((t) => t.data.key)];
    const messageKey = plan.dequeued === undefined ? undefined : layout.message(uid, plan.dequeued);
    if (messageKey !== undefined) keys.push(messageKey);
    const entries = await readMany(kv, keys);
    const metaEntry = entries[0] as Deno.KvEntryMaybe<Meta>;
    let meta: Meta | undefined;
    if (metaEntry.versionstamp === null) {
      this.#cache = undefined;
      if (cached !== undefined) return RETRY; // Deleted meanwhile: start a new session.
    } else {
      const snap = await this.#accept(metaEntry);
      if (snap === RETRY || snap === undefined || snap.meta.uid !== uid) return RETRY;
      meta = snap.meta;
      uid = meta.uid;
      for (let i = 0; i < list.length; i++) {
        const e = entries[i + 1]!;
        if (e.versionstamp !== null) list[i]!.stored = decodeRecord(e.value as Uint8Array);
        const stored = list[i]!.stored;
        if (stored?.key !== undefined && !sameBytes(stored.key, list[i]!.key)) {
          list[i]!.stored = undefined; // Another key with the same hash: never in practice.
        }
      }
    }
    for (const t of list) {
      const l = live(t.stored, now);
      if (l !== undefined) {
        t.current = {
          encoding: l.encoding,
          bytes: l.value,
          expiresAt: l.expiresAt,
          ...(l.chunks === undefined ? {} : { chunked: l }),
        };
      }
    }

    // 2. Checks, against the state before the plan.
    for (const c of plan.checks) {
      const t = touched.get(hex(c.key))!;
      const version = live(t.stored, now)?.version ?? null;
      if (version !== c.version) return null;
    }

    const bump = plan.dequeued === undefined || plan.mutations.length > 0 ||
      plan.enqueues.length > 0;
    const base = meta?.version ?? 0;
    const version = bump ? base + versionStep() : base;
    const messageEntry = messageKey === undefined
      ? undefined
      : entries[entries.length - 1] as Deno.KvEntryMaybe<MessageRecord>;
    // Removing a delivered message alone is bookkeeping, not a commit: the
    // version stays (and there is nothing to remove from a session that is gone).
    if (!bump && meta === undefined) return version;

    // 3. The mutations, in order.
    for (const m of plan.mutations) {
      let t: Touched;
      if (m.type === "set" && m.versionstampKey) {
        const key = withVersionstamp(m.key, version);
        t = touched.get(hex(key)) ?? touch(key);
      } else {
        t = touched.get(hex(m.key))!;
      }
      t.dirty = true;
      if (m.type === "set") {
        t.current = {
          encoding: m.value.encoding,
          bytes: m.value.bytes,
          expiresAt: m.expireIn === null ? null : now + m.expireIn,
        };
      } else if (m.type === "delete") {
        t.current = undefined;
      } else {
        let current: EncodedValue | undefined;
        if (t.current !== undefined) {
          let bytes = t.current.bytes;
          if (bytes === undefined) {
            const read = await readChunks(this.#ctx, uid, t.current.chunked!.chunks!);
            if (read === RETRY) return RETRY;
            bytes = read;
          }
          current = { encoding: t.current.encoding, bytes };
        }
        const next = applyNumeric(m.type, current, m.value);
        t.current = { encoding: next.encoding, bytes: next.bytes, expiresAt: null };
      }
    }

    // 4. The Deno KV mutations.
    const ops: DenoOp[] = [];
    const staged: DenoOp[] = [];
    let sizeDelta = 0;
    let nextExpiry = meta?.nextExpiry ?? null;
    for (const t of touched.values()) {
      if (!t.dirty) continue;
      if (t.stored !== undefined) {
        sizeDelta -= recordSize(t.key, t.stored);
        ops.push(...chunkDeletes(this.#ctx, uid, t.stored));
      }
      const cur = t.current;
      if (cur === undefined) {
        if (t.stored !== undefined) ops.push({ type: "delete", key: t.data.key });
        continue;
      }
      let bytes = cur.bytes;
      if (bytes === undefined) {
        // Unchanged chunked value of a key written again: rewrite its chunks.
        const read = await readChunks(this.#ctx, uid, cur.chunked!.chunks!);
        if (read === RETRY) return RETRY;
        bytes = read;
      }
      const encoded = encodeRecord({
        encoding: cur.encoding,
        version,
        expiresAt: cur.expiresAt,
        longKey: t.data.long ? t.key : undefined,
        value: bytes,
        chunkId: randomId,
      });
      ops.push({ type: "set", key: t.data.key, value: encoded.record });
      if (encoded.chunks !== undefined) {
        const { id, parts } = encoded.chunks;
        parts.forEach((part, i) =>
          staged.push({ type: "set", key: layout.chunk(uid, id, i), value: part })
        );
      }
      sizeDelta += t.key.length + bytes.length;
      if (cur.expiresAt !== null && (nextExpiry === null || cur.expiresAt < nextExpiry)) {
        nextExpiry = cur.expiresAt;
      }
    }
    plan.enqueues.forEach((e, i) => {
      const id = version * 1024 + i;
      const readyAt = now + e.delayMs;
      const message: MessageRecord = {
        readyAt,
        at: readyAt,
        backoff: [...e.backoffSchedule],
        undelivered: e.keysIfUndelivered.map((k) => k.slice()),
        deadline: null,
      };
      if (serializeV8(message).length > DENO_MAX_VALUE_BYTES) {
        throw new TypeError(
          `keysIfUndelivered too large for the Deno KV backend (max ${DENO_MAX_VALUE_BYTES} bytes with the retry schedule)`,
        );
      }
      ops.push(
        { type: "set", key: layout.message(uid, id), value: message },
        { type: "set", key: layout.payload(uid, id), value: e.payload.slice() },
        { type: "set", key: layout.schedule(uid, readyAt, id), value: null },
      );
    });
    const checks: DenoCheck[] = [{ key: this.#metaKey, versionstamp: metaEntry.versionstamp }];
    let queued = (meta?.queued ?? 0) + plan.enqueues.length;
    if (messageEntry?.versionstamp) {
      checks.push({ key: messageKey!, versionstamp: messageEntry.versionstamp });
      ops.push(...this.#messageDeletes(uid, plan.dequeued!, messageEntry.value));
      queued = Math.max(0, queued - 1);
    }

    // 5. The meta record and the index entries.
    const lastActivity = Math.max(now, meta?.lastActivity ?? 0);
    const next: Meta = {
      uid,
      version,
      lastActivity,
      sizeBytes: Math.max(0, (meta?.sizeBytes ?? 0) + sizeDelta),
      bucket: bucketOf(lastActivity),
      nextExpiry,
      queued,
    };
    const index: DenoOp[] = [];
    if (meta?.bucket !== next.bucket) {
      if (meta !== undefined) {
        index.push({ type: "delete", key: layout.idle(meta.bucket, this.#ref) });
      }
      index.push({ type: "set", key: layout.idle(next.bucket, this.#ref), value: null });
    }
    if ((meta?.nextExpiry ?? null) !== nextExpiry) {
      if (meta?.nextExpiry != null) {
        index.push({ type: "delete", key: layout.expiry(meta.nextExpiry, this.#ref) });
      }
      if (nextExpiry !== null) {
        index.push({ type: "set", key: layout.expiry(nextExpiry, this.#ref), value: null });
      }
    }

    // 6. Write: one atomic operation when it fits, else chunks, log and decision.
    const setMeta: DenoOp = { type: "set", key: this.#metaKey, value: next };
    if (fits(checks, [...ops, ...staged, setMeta, ...index])) {
      const r = await commitAtomic(kv, checks, [...ops, ...staged, setMeta, ...index]);
      if (!r.ok) return RETRY;
      this.#cache = { meta: next, stamp: r.versionstamp };
      return version;
    }
    return await this.#commitLarge(uid, version, checks, ops, staged, next, index);
  }

  async #commitLarge(
    uid: number,
    version: number,
    checks: DenoCheck[],
    ops: DenoOp[],
    staged: DenoOp[],
    next: Meta,
    index: DenoOp[],
  ): Promise<number | Retry> {
    const { kv, layout } = this.#ctx;
    let decided = false;
    const written: DenoOp[] = [];
    try {
      // Chunks first: nothing points at them until the commit is decided.
      for (const op of staged) written.push({ type: "delete", key: op.key });
      await commitBatches(kv, [], staged);
      const setMeta: DenoOp = { type: "set", key: this.#metaKey, value: next };
      if (fits(checks, [...ops, setMeta, ...index])) {
        const r = await commitAtomic(kv, checks, [...ops, setMeta, ...index]);
        if (!r.ok) return RETRY;
        decided = true;
        this.#cache = { meta: next, stamp: r.versionstamp };
        return version;
      }
      // Too large even so: a redo log, then the decision.
      const logId = randomId();
      const records = encodeLog(ops);
      const logOps: DenoOp[] = records.map((value, i) => ({
        type: "set",
        key: layout.logChunk(uid, logId, i),
        value,
      }));
      for (const op of logOps) written.push({ type: "delete", key: op.key });
      await commitBatches(kv, [], logOps);
      const flipped: Meta = { ...next, log: { id: logId, chunks: records.length, version } };
      const r = await commitAtomic(kv, checks, [
        { type: "set", key: this.#metaKey, value: flipped },
        ...index,
      ]);
      if (!r.ok) return RETRY;
      decided = true;
      this.#cache = undefined;
      await applyLog(this.#ctx, this.#metaKey, flipped, r.versionstamp);
      return version;
    } finally {
      if (!decided && written.length > 0) {
        await commitBatches(kv, [], written).catch((error) =>
          logger.warn("Could not remove the chunks of an undecided commit: {error}", { error })
        );
      }
    }
  }

  #messageDeletes(uid: number, id: number, message: MessageRecord): DenoOp[] {
    const { layout } = this.#ctx;
    return [
      { type: "delete", key: layout.message(uid, id) },
      { type: "delete", key: layout.payload(uid, id) },
      { type: "delete", key: layout.schedule(uid, message.at, id) },
    ];
  }

  async dequeue(now: number, leaseMs: number): Promise<QueuedMessage | undefined> {
    const { kv, layout } = this.#ctx;
    for (;;) {
      const snap = this.#cache ?? await this.#load();
      if (snap === undefined) return undefined;
      const uid = snap.meta.uid;
      let first: Deno.KvEntry<unknown> | undefined;
      for await (
        const e of kv.list(
          { start: layout.scheduleStart(uid), end: layout.scheduleEnd(uid, now) },
          {
            limit: 1,
          },
        )
      ) first = e;
      if (first === undefined) return undefined;
      const id = first.key[first.key.length - 1] as number;
      const [m, me, p] = await kv.getMany([
        this.#metaKey,
        layout.message(uid, id),
        layout.payload(uid, id),
      ]);
      const fresh = await this.#accept(m as Deno.KvEntryMaybe<Meta>);
      if (fresh === RETRY || fresh?.meta.uid !== uid) continue;
      if (me.versionstamp === null || p.versionstamp === null) {
        // A schedule entry left behind: drop it.
        await commitAtomic(kv, [{ key: first.key, versionstamp: first.versionstamp }], [
          { type: "delete", key: first.key },
        ]);
        continue;
      }
      const message = me.value as MessageRecord;
      const deadline = now + leaseMs;
      const r = await commitAtomic(kv, [
        { key: layout.message(uid, id), versionstamp: me.versionstamp },
        { key: first.key, versionstamp: first.versionstamp },
      ], [
        { type: "delete", key: first.key },
        { type: "set", key: layout.schedule(uid, deadline, id), value: null },
        {
          type: "set",
          key: layout.message(uid, id),
          value: { ...message, at: deadline, deadline } satisfies MessageRecord,
        },
      ]);
      if (!r.ok) continue;
      return {
        id,
        payload: p.value as Uint8Array,
        backoffSchedule: message.backoff,
        keysIfUndelivered: message.undelivered,
      };
    }
  }

  async nextDelivery(): Promise<number | undefined> {
    const { kv, layout } = this.#ctx;
    const snap = this.#cache ?? await this.#load();
    if (snap === undefined) return undefined;
    const uid = snap.meta.uid;
    for await (
      const e of kv.list({ start: layout.scheduleStart(uid), end: layout.scheduleAll(uid) }, {
        limit: 1,
      })
    ) {
      return e.key[e.key.length - 2] as number;
    }
    return undefined;
  }

  extendMessage(id: number, deadline: number): Promise<void> {
    return this.#updateMessage(id, (m) => ({ ...m, at: deadline, deadline }));
  }

  retryMessage(id: number, readyAt: number, backoffSchedule: number[]): Promise<void> {
    return this.#updateMessage(id, (m) => ({
      ...m,
      readyAt,
      at: readyAt,
      backoff: [...backoffSchedule],
      deadline: null,
    }));
  }

  async #updateMessage(id: number, update: (m: MessageRecord) => MessageRecord): Promise<void> {
    const { kv, layout } = this.#ctx;
    for (;;) {
      const snap = this.#cache ?? await this.#load();
      if (snap === undefined) return;
      const uid = snap.meta.uid;
      const key = layout.message(uid, id);
      const e = await kv.get<MessageRecord>(key);
      if (e.versionstamp === null) return;
      const next = update(e.value);
      const r = await commitAtomic(kv, [{ key, versionstamp: e.versionstamp }], [
        { type: "delete", key: layout.schedule(uid, e.value.at, id) },
        { type: "set", key: layout.schedule(uid, next.at, id), value: null },
        { type: "set", key, value: next },
      ]);
      if (r.ok) return;
    }
  }

  async changeToken(): Promise<string> {
    const e = await this.#ctx.kv.get<Meta>(this.#metaKey);
    return e.versionstamp ?? "none";
  }

  /**
   * Deletes the expired entries (and their chunks) when the meta record says
   * some are due, and records the next expiry.
   *
   * @returns How many entries were removed.
   */
  async sweepExpired(now: number): Promise<number> {
    const { kv, layout } = this.#ctx;
    const snap = await this.#load();
    if (snap === undefined || snap.meta.nextExpiry === null || snap.meta.nextExpiry > now) return 0;
    const { meta, stamp } = snap;
    const uid = meta.uid;
    const base = layout.data(uid).length;
    const ops: DenoOp[] = [];
    let removed = 0;
    let freed = 0;
    let nextExpiry: number | null = null;
    for await (const e of kv.list<Uint8Array>({ prefix: layout.data(uid) }, { batchSize: 1000 })) {
      const record = decodeRecord(e.value);
      if (record.expiresAt === null) continue;
      if (record.expiresAt <= now) {
        const key = record.key ?? (e.key[base] as Uint8Array);
        ops.push({ type: "delete", key: e.key }, ...chunkDeletes(this.#ctx, uid, record));
        freed += recordSize(key, record);
        removed++;
      } else if (nextExpiry === null || record.expiresAt < nextExpiry) {
        nextExpiry = record.expiresAt;
      }
    }
    const next: Meta = { ...meta, sizeBytes: Math.max(0, meta.sizeBytes - freed), nextExpiry };
    const index: DenoOp[] = [
      { type: "delete", key: layout.expiry(meta.nextExpiry!, this.#ref) },
      ...(nextExpiry === null
        ? []
        : [{ type: "set", key: layout.expiry(nextExpiry, this.#ref), value: null } as DenoOp]),
      { type: "set", key: this.#metaKey, value: next },
    ];
    // Removing expired entries changes nothing a reader sees: only the last
    // batch writes the meta record.
    const checks: DenoCheck[] = [{ key: this.#metaKey, versionstamp: stamp }];
    if (await commitBatches(kv, checks, [...ops, ...index]) === null) return 0;
    this.#cache = undefined;
    return removed;
  }

  /** Forgets the cached meta record. */
  close(): void {
    this.#cache = undefined;
  }
}
