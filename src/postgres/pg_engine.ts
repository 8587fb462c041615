/**
 * One session's storage on PostgreSQL: the `KvEngine` operations as single
 * statements on the shared pool. An engine holds no connection. A commit is
 * one call of the `kv_commit` function, which locks the session's row (so
 * commits serialise per session only), evaluates the checks and writes every
 * mutation under one new version; a plan with `sum`/`min`/`max` first reads
 * the current values (their encodings are computed here, with the codec
 * shared with SQLite) and has the commit verify they did not change meanwhile.
 *
 * @module
 */
import { applyNumeric } from "../codec/numeric.ts";
import type { EncodedValue, ValueEncoding } from "../codec/value_codec.ts";
import { versionStep } from "../codec/versionstamp.ts";
import type { BackendEngine, SessionRef } from "../backend.ts";
import type { CommitPlan, KvRow, QueuedMessage, ReadRange } from "../engine.ts";
import { SessionBusyError } from "../errors.ts";
import type { Statements } from "./schema.ts";
import {
  boolArray,
  byteaArray,
  intArray,
  isConnectionError,
  isRetryable,
  mapError,
  num,
  query,
  type Row,
  type Sql,
  textArray,
} from "./_sql.ts";

/** What every engine of one backend shares. */
export interface PgContext {
  /** The pool. */
  readonly sql: Sql;
  /** The schema's statements. */
  readonly st: Statements;
  /** The redacted address, for messages. */
  readonly location: string;
}

const encoder = new TextEncoder();

/** An id as stored: its UTF-8 bytes. */
export function idBytes(id: string): Uint8Array {
  return encoder.encode(id);
}

/** How often a commit whose `sum`/`min`/`max` inputs changed meanwhile is tried again. */
const MAX_NUMERIC_RETRIES = 100;
/** How often a statement failing on a serialization failure or deadlock runs again. */
const MAX_RETRIES = 5;

/**
 * A time in epoch ms as stored (whole ms, rounded up: a fractional delay or
 * expiry never ends early).
 */
const ms = (t: number) => Math.ceil(t);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `keysIfUndelivered` as one `bytea`: each key as a 4-byte length and its bytes. */
export function packKeys(keys: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const k of keys) size += 4 + k.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const k of keys) {
    view.setUint32(at, k.length);
    out.set(k, at + 4);
    at += 4 + k.length;
  }
  return out;
}

/** The inverse of {@linkcode packKeys}. */
export function unpackKeys(bytes: Uint8Array): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keys: Uint8Array[] = [];
  for (let at = 0; at < bytes.length;) {
    const n = view.getUint32(at);
    keys.push(bytes.slice(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return keys;
}

/** A key's final state in a commit. */
interface Write {
  key: Uint8Array;
  versionstampKey: boolean;
  /** `undefined`: deleted. */
  value: EncodedValue | undefined;
  exp: number | null;
}

/** One session on PostgreSQL. */
export class PgEngine implements BackendEngine {
  readonly #ctx: PgContext;
  readonly #bot: Uint8Array;
  readonly #session: Uint8Array;
  #commitTail: Promise<unknown> = Promise.resolve();

  /**
   * @param ctx The pool and statements.
   * @param ref The session.
   */
  constructor(ctx: PgContext, ref: SessionRef) {
    this.#ctx = ctx;
    this.#bot = idBytes(ref.botId);
    this.#session = idBytes(ref.sessionId);
  }

  /** Runs a statement; reads are tried once more on a dropped connection. */
  async #run(text: string, params: unknown[], read: boolean): Promise<Row[]> {
    for (let attempt = 0;; attempt++) {
      try {
        return await query(this.#ctx.sql, text, [this.#bot, this.#session, ...params]);
      } catch (error) {
        const again = (isRetryable(error) && attempt < MAX_RETRIES) ||
          (read && isConnectionError(error) && attempt === 0);
        if (!again) throw mapError(error, this.#ctx.location);
        await sleep(attempt * 5);
      }
    }
  }

  async get(key: Uint8Array, now: number): Promise<KvRow | undefined> {
    const [r] = await this.#run(this.#ctx.st.get, [key, Math.floor(now)], true);
    return r === undefined ? undefined : [
      key,
      r.v as Uint8Array,
      Number(r.enc),
      num(r.version),
      r.exp === null ? null : num(r.exp),
    ];
  }

  async getMany(keys: Uint8Array[], now: number): Promise<(KvRow | undefined)[]> {
    const rows = await this.#run(this.#ctx.st.getMany, [byteaArray(keys), Math.floor(now)], true);
    const found = new Map<string, Row>();
    for (const r of rows) found.set((r.k as Uint8Array).toHex(), r);
    return keys.map((key) => {
      const r = found.get(key.toHex());
      return r === undefined ? undefined : [
        key,
        r.v as Uint8Array,
        Number(r.enc),
        num(r.version),
        r.exp === null ? null : num(r.exp),
      ];
    });
  }

  async list(range: ReadRange, now: number): Promise<KvRow[]> {
    const st = range.reverse ? this.#ctx.st.listDesc : this.#ctx.st.listAsc;
    const rows = await this.#run(st, [range.start, Math.floor(now), range.end, range.limit], true);
    return rows.map((r) => [r.k as Uint8Array, r.v as Uint8Array, Number(r.enc), num(r.version)]);
  }

  commit(plan: CommitPlan, now: number): Promise<number | null> {
    // One commit at a time per session in this process, in call order, as
    // with SQLite files: versionstamps then grow in the order of the calls.
    const result = this.#commitTail.then(() => this.#commit(plan, now));
    this.#commitTail = result.catch(() => undefined);
    return result;
  }

  async #commit(plan: CommitPlan, now: number): Promise<number | null> {
    const numeric = plan.mutations.some((m) => m.type !== "set" && m.type !== "delete");
    for (let attempt = 0;; attempt++) {
      const result = await this.#commitOnce(plan, now, numeric);
      if (result !== "changed") return result;
      if (attempt >= MAX_NUMERIC_RETRIES) {
        throw new SessionBusyError(
          `The values of a sum/min/max kept changing for ${MAX_NUMERIC_RETRIES} attempts`,
        );
      }
      await sleep(Math.random() * Math.min(attempt + 1, 10));
    }
  }

  async #commitOnce(
    plan: CommitPlan,
    now: number,
    numeric: boolean,
  ): Promise<number | null | "changed"> {
    // The current values of sum/min/max keys (and, as they are read anyway,
    // the checks: a check that fails in this snapshot fails the commit).
    let current: Map<string, Row> | undefined;
    if (numeric) {
      const keys = new Map<string, Uint8Array>();
      for (const c of plan.checks) keys.set(c.key.toHex(), c.key);
      for (const m of plan.mutations) {
        if (m.type !== "set" && m.type !== "delete") keys.set(m.key.toHex(), m.key);
      }
      const rows = await this.#run(
        this.#ctx.st.readForCommit,
        [byteaArray([...keys.values()]), Math.floor(now)],
        true,
      );
      current = new Map(rows.map((r) => [(r.k as Uint8Array).toHex(), r]));
      for (const c of plan.checks) {
        const r = current.get(c.key.toHex());
        if ((r === undefined ? null : num(r.version)) !== c.version) return null;
      }
    }
    // The final state of every key the plan touches, in mutation order.
    const writes = new Map<string, Write>();
    const guards = new Map<string, [Uint8Array, number | null]>();
    for (const m of plan.mutations) {
      if (m.type === "set") {
        const id = (m.versionstampKey ? "v" : "k") + m.key.toHex();
        writes.delete(id);
        writes.set(id, {
          key: m.key,
          versionstampKey: m.versionstampKey,
          value: m.value,
          exp: m.expireIn === null ? null : ms(now + m.expireIn),
        });
      } else if (m.type === "delete") {
        const id = "k" + m.key.toHex();
        writes.delete(id);
        writes.set(id, { key: m.key, versionstampKey: false, value: undefined, exp: null });
      } else {
        const hex = m.key.toHex();
        const id = "k" + hex;
        const before = writes.get(id);
        let value: EncodedValue | undefined;
        if (before !== undefined) {
          value = before.value;
        } else {
          const r = current!.get(hex);
          value = r === undefined
            ? undefined
            : { bytes: r.v as Uint8Array, encoding: Number(r.enc) as ValueEncoding };
          if (!guards.has(hex)) guards.set(hex, [m.key, r === undefined ? null : num(r.version)]);
        }
        const next = applyNumeric(m.type, value, m.value);
        writes.delete(id);
        writes.set(id, { key: m.key, versionstampKey: false, value: next, exp: null });
      }
    }
    const sets: Write[] = [];
    const deletes: Uint8Array[] = [];
    for (const w of writes.values()) {
      if (w.value === undefined) deletes.push(w.key);
      else sets.push(w);
    }
    const bump = plan.dequeued === undefined || plan.mutations.length > 0 ||
      plan.enqueues.length > 0;
    const [row] = await this.#run(this.#ctx.st.commit, [
      Math.floor(now),
      versionStep(),
      bump,
      byteaArray(plan.checks.map((c) => c.key)),
      intArray(plan.checks.map((c) => c.version)),
      byteaArray([...guards.values()].map((g) => g[0])),
      intArray([...guards.values()].map((g) => g[1])),
      byteaArray(sets.map((w) => w.key)),
      byteaArray(sets.map((w) => w.value!.bytes)),
      intArray(sets.map((w) => w.value!.encoding)),
      intArray(sets.map((w) => w.exp)),
      boolArray(sets.map((w) => w.versionstampKey)),
      byteaArray(deletes),
      intArray(plan.enqueues.map((e) => ms(now + e.delayMs))),
      byteaArray(plan.enqueues.map((e) => e.payload)),
      textArray(plan.enqueues.map((e) => JSON.stringify(e.backoffSchedule))),
      byteaArray(plan.enqueues.map((e) => packKeys(e.keysIfUndelivered))),
      plan.dequeued ?? null,
    ], false);
    const version = num(row!.version);
    if (version === -1) return null;
    if (version === -2) return "changed";
    return version;
  }

  async dequeue(now: number, leaseMs: number): Promise<QueuedMessage | undefined> {
    const [r] = await this.#run(this.#ctx.st.dequeue, [Math.floor(now), ms(leaseMs)], false);
    if (r === undefined) return undefined;
    return {
      id: num(r.id),
      payload: r.payload as Uint8Array,
      backoffSchedule: JSON.parse(r.backoff as string),
      keysIfUndelivered: unpackKeys(r.undelivered as Uint8Array),
    };
  }

  async nextDelivery(): Promise<number | undefined> {
    const [r] = await this.#run(this.#ctx.st.nextDelivery, [], true);
    return r === undefined || r.at === null ? undefined : num(r.at);
  }

  async extendMessage(id: number, deadline: number): Promise<void> {
    await this.#run(this.#ctx.st.extendMessage, [id, ms(deadline)], false);
  }

  async retryMessage(id: number, readyAt: number, backoffSchedule: number[]): Promise<void> {
    await this.#run(
      this.#ctx.st.retryMessage,
      [id, ms(readyAt), JSON.stringify(backoffSchedule)],
      false,
    );
  }

  async changeToken(): Promise<string> {
    const [r] = await this.#run(this.#ctx.st.changeToken, [], true);
    return r === undefined ? "none" : String(r.version);
  }

  /** Deletes the session's expired rows now. @returns How many were removed. */
  async sweepExpired(now: number): Promise<number> {
    const [r] = await this.#run(this.#ctx.st.sweep, [Math.floor(now)], false);
    return r === undefined ? 0 : num(r.n);
  }

  /** Nothing to release: engines share the backend's pool. */
  close(): void {}
}
