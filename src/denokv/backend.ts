/**
 * The Deno KV backend: every session of a `SessionStore` inside one
 * `Deno.Kv` (a local file, Deno Deploy, or a self-hosted denokv reached with
 * `Deno.openKv(url)`), under a key prefix. See `./_layout.ts` for the keys
 * and `./engine.ts` for how a session's KV semantics are kept.
 *
 * Cross-instance state is kept in the KV itself: a per-session control
 * record holds the pins of the instances that have the session open and the
 * lease, each with a deadline that its holder renews on an unref'd timer; a
 * holder that dies loses them when they lapse.
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
import { SessionCorruptedError } from "../errors.ts";
import { Budget, commitAtomic, type DenoCheck, type DenoOp } from "./_atomic.ts";
import { type Control, Layout, type Meta, randomId } from "./_layout.ts";
import { RecordError } from "./_records.ts";
import { applyLog, DenoKvEngine, type EngineContext, readMany } from "./engine.ts";

const logger = getLogger(["sessionkv", "denokv"]);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Extra life given to a control record in Deno KV beyond its last deadline. */
const CONTROL_GRACE_MS = 60_000;
/** Idle candidates read and decided together by cleanup. */
const CLEANUP_PAGE = 100;
/** Sessions deleted by one atomic operation (two checks each). */
const DELETE_GROUP = 5;

/** Options of {@linkcode denoKvBackend}. */
export interface DenoKvBackendOptions {
  /**
   * The key prefix under which every session is kept. Several stores can
   * share one `Deno.Kv` under different prefixes.
   * @default {["sessionkv"]}
   */
  prefix?: readonly Deno.KvKeyPart[];
  /**
   * How long a lease lasts unless renewed, in ms. The holder renews it every
   * third of this while held; a holder that dies (or loses its connection)
   * loses the lease this long after its last renewal.
   * @default {15000}
   */
  leaseTtlMs?: number;
  /**
   * How long a pin (this instance has the session open, so other instances'
   * cleanup keeps it) lasts unless renewed, in ms.
   * @default {60000}
   */
  pinTtlMs?: number;
  /**
   * How long a commit or read keeps retrying while other writers keep
   * changing the session, before `SessionBusyError`.
   * @default {10000}
   */
  retryTimeoutMs?: number;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number: received ${String(value)}`);
  }
  if (value <= 0 || !Number.isFinite(value) || value > 2 ** 31 - 1) {
    throw new RangeError(`${name} must be a positive number of ms: received ${value}`);
  }
  return value;
}

/** Drops lapsed pins and a lapsed lease. */
function prune(control: Control | null | undefined, now: number): Control {
  const out: Control = { pins: {}, lease: null };
  if (control == null) return out;
  for (const [id, until] of Object.entries(control.pins ?? {})) {
    if (until > now) out.pins[id] = until;
  }
  if (control.lease && control.lease.until > now) out.lease = { ...control.lease };
  return out;
}

/** Whether a session counts as idle at the cutoff: no write since, no pending message. */
function idle(meta: Meta, cutoffMs: number): boolean {
  return meta.log === undefined && (meta.queued ?? 0) === 0 && meta.lastActivity <= cutoffMs;
}

/** A session's identity as a map key. */
function refKey(ref: SessionRef): string {
  return JSON.stringify([ref.botId, ref.sessionId]);
}

/** An idle session about to be deleted. */
interface Doomed {
  ref: SessionRef;
  meta: Meta;
  metaStamp: string;
  controlStamp: string | null;
}

/**
 * Sessions kept in a `Deno.Kv`. Create it with {@linkcode denoKvBackend}.
 */
export class DenoKvBackend implements SessionBackend {
  readonly #kv: Deno.Kv;
  readonly #layout: Layout;
  readonly #ctx: EngineContext;
  readonly #leaseTtlMs: number;
  readonly #pinTtlMs: number;
  readonly #instance = crypto.randomUUID();
  readonly #location: string;
  readonly #pins = new Map<string, { ref: SessionRef; count: number }>();
  readonly #leases = new Set<() => Promise<void>>();
  readonly #pending = new Set<Promise<unknown>>();
  #pinTimer: ReturnType<typeof setInterval> | undefined;
  #renewing = false;
  #closed = false;

  /**
   * Makes the backend; `denoKvBackend()` is the usual way.
   *
   * @param kv The Deno KV to keep sessions in; the backend never closes it.
   * @param options Prefix and timings.
   * @throws {TypeError} When `kv` is not a `Deno.Kv` or the prefix is invalid.
   * @throws {RangeError} When a time is not positive or the prefix is too long.
   */
  constructor(kv: Deno.Kv, options: DenoKvBackendOptions = {}) {
    if (
      kv === null || typeof kv !== "object" || typeof kv.atomic !== "function" ||
      typeof kv.getMany !== "function" || typeof kv.list !== "function"
    ) {
      throw new TypeError(`kv must be a Deno.Kv: received ${String(kv)}`);
    }
    this.#kv = kv;
    this.#layout = new Layout(options.prefix ?? ["sessionkv"]);
    this.#leaseTtlMs = positive("leaseTtlMs", options.leaseTtlMs, 15_000);
    this.#pinTtlMs = positive("pinTtlMs", options.pinTtlMs, 60_000);
    this.#ctx = {
      kv,
      layout: this.#layout,
      retryTimeoutMs: positive("retryTimeoutMs", options.retryTimeoutMs, 10_000),
    };
    this.#location = `denokv:${this.#layout.prefix.map((p) => String(p)).join("/")}`;
  }

  /** `denokv:` and the prefix. */
  get location(): string {
    return this.#location;
  }

  /** The largest session key, in escaped bytes, stored as one key part (longer ones are cut and hashed). */
  get keyThreshold(): number {
    return this.#layout.threshold;
  }

  #path(ref: SessionRef): string {
    return `${this.#location}/${ref.botId}/${ref.sessionId}`;
  }

  /** Keeps track of background work, so `close()` can wait for it. */
  #track<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    promise.then(
      () => this.#pending.delete(promise),
      () => this.#pending.delete(promise),
    );
    return promise;
  }

  /**
   * Changes a session's control record: reads it, drops lapsed entries,
   * lets `change` edit it and writes it back with a versionstamp check,
   * again until no one wrote in between.
   *
   * @returns Whether `change` made a change (it returns `false` for none).
   */
  async #updateControl(
    ref: SessionRef,
    change: (control: Control, now: number) => boolean,
  ): Promise<boolean> {
    const key = this.#layout.control(ref);
    for (let attempt = 0;; attempt++) {
      const e = await this.#kv.get<Control>(key);
      const now = Date.now();
      const control = prune(e.value, now);
      if (!change(control, now)) return false;
      const untils = [...Object.values(control.pins), control.lease?.until ?? 0];
      const until = Math.max(...untils);
      const op: DenoOp = until <= now ? { type: "delete", key } : {
        type: "set",
        key,
        value: control,
        expireIn: Math.ceil(until - now + CONTROL_GRACE_MS),
      };
      const r = await commitAtomic(this.#kv, [{ key, versionstamp: e.versionstamp }], [op]);
      if (r.ok) return true;
      if (attempt > 0) await sleep(Math.min(2 ** attempt, 20) * Math.random());
    }
  }

  /** Whether another instance has the session open, or anyone holds its lease. */
  #usedElsewhere(control: Control | null | undefined, now: number, lease = true): boolean {
    const c = prune(control, now);
    for (const id of Object.keys(c.pins)) if (id !== this.#instance) return true;
    if (c.lease === null) return false;
    return lease || !c.lease.holder.startsWith(this.#instance + ":");
  }

  /**
   * Records in the session's control record that this instance has it open
   * (renewed until released), so other instances' cleanup keeps it.
   */
  async pin(ref: SessionRef): Promise<BackendHold> {
    const key = refKey(ref);
    const held = this.#pins.get(key);
    if (held !== undefined) {
      held.count++;
    } else {
      this.#pins.set(key, { ref: { botId: ref.botId, sessionId: ref.sessionId }, count: 1 });
      await this.#track(this.#updateControl(ref, (c, now) => {
        c.pins[this.#instance] = now + this.#pinTtlMs;
        return true;
      }));
      this.#startPinTimer();
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        return this.#unpin(key);
      },
    };
  }

  #unpin(key: string): Promise<void> | undefined {
    const held = this.#pins.get(key);
    if (held === undefined || --held.count > 0) return;
    this.#pins.delete(key);
    return this.#track(
      this.#updateControl(held.ref, (c) => {
        // Pinned again meanwhile: keep it.
        if (this.#pins.has(key) || !(this.#instance in c.pins)) return false;
        delete c.pins[this.#instance];
        return true;
      }).then(() => undefined),
    );
  }

  #startPinTimer(): void {
    if (this.#pinTimer !== undefined || this.#closed) return;
    this.#pinTimer = setInterval(() => {
      if (this.#renewing) return;
      if (this.#pins.size === 0) {
        clearInterval(this.#pinTimer);
        this.#pinTimer = undefined;
        return;
      }
      this.#renewing = true;
      this.#track(this.#renewPins()).finally(() => this.#renewing = false);
    }, this.#pinTtlMs / 3);
    Deno.unrefTimer(Number(this.#pinTimer));
  }

  async #renewPins(): Promise<void> {
    for (const [key, { ref }] of [...this.#pins]) {
      if (this.#closed) return;
      try {
        await this.#updateControl(ref, (c, now) => {
          if (!this.#pins.has(key)) return false;
          c.pins[this.#instance] = now + this.#pinTtlMs;
          return true;
        });
      } catch (error) {
        logger.warn("Renewing the pin of {botId}/{sessionId} failed: {error}", { ...ref, error });
      }
    }
  }

  /** Opens the session's storage; the session itself is created by its first commit. */
  open(ref: SessionRef): Promise<BackendEngine> {
    return Promise.resolve(new DenoKvEngine(this.#ctx, ref));
  }

  /**
   * Takes the session's lease: a deadline in its control record, set with a
   * versionstamp check, renewed every third of `leaseTtlMs` until released.
   * Polls until `request.deadline`.
   */
  async lease(ref: SessionRef, request: LeaseRequest): Promise<BackendHold> {
    const token = `${this.#instance}:${randomId()}`;
    const ttl = this.#leaseTtlMs;
    let delay = 1;
    for (;;) {
      request.signal?.throwIfAborted();
      request.assertOpen();
      const taken = await this.#updateControl(ref, (c, now) => {
        if (c.lease !== null) return false;
        c.lease = { holder: token, until: now + ttl };
        return true;
      });
      if (taken) break;
      if (Date.now() >= request.deadline) throw request.timeout();
      await sleep(Math.min(delay, Math.max(1, request.deadline - Date.now())));
      delay = Math.min(delay * 2, 50);
    }
    let lost = false;
    let renewing: Promise<unknown> | undefined;
    const timer = setInterval(() => {
      if (renewing !== undefined) return;
      renewing = this.#track(this.#updateControl(ref, (c, now) => {
        if (c.lease?.holder !== token) {
          lost = true;
          return false;
        }
        c.lease.until = now + ttl;
        return true;
      })).then(() => {
        if (lost) {
          clearInterval(timer);
          logger.warn("Lost the lease of {botId}/{sessionId}: it lapsed before renewal", {
            ...ref,
          });
        }
      }, (error) => logger.warn("Renewing a lease failed: {error}", { error }))
        .finally(() => renewing = undefined);
    }, ttl / 3);
    Deno.unrefTimer(Number(timer));
    let done: Promise<void> | undefined;
    const release = (): Promise<void> => {
      done ??= (async () => {
        clearInterval(timer);
        this.#leases.delete(release);
        await renewing;
        await this.#track(this.#updateControl(ref, (c) => {
          if (c.lease?.holder !== token) return false;
          c.lease = null;
          return true;
        }));
      })();
      return done;
    };
    this.#leases.add(release);
    return { release };
  }

  /** Lists the index: one record per session, no entry is read. */
  async *sessions(botId: string | undefined): AsyncIterable<BackendSessionInfo> {
    const kv = this.#kv;
    const layout = this.#layout;
    const n = layout.prefix.length + 1;
    const controls = new Map<string, Control>();
    for await (const e of kv.list<Control>({ prefix: layout.controls(botId) })) {
      controls.set(JSON.stringify(e.key.slice(n)), e.value);
    }
    for await (const e of kv.list<Meta>({ prefix: layout.metas(botId) }, { batchSize: 500 })) {
      const ref = { botId: e.key[n] as string, sessionId: e.key[n + 1] as string };
      const control = controls.get(JSON.stringify(e.key.slice(n)));
      yield {
        ...ref,
        path: this.#path(ref),
        sizeBytes: e.value.sizeBytes,
        lastActivity: new Date(e.value.lastActivity),
        openElsewhere: this.#usedElsewhere(control, Date.now(), false),
      };
    }
  }

  /** The mutations that delete a session's records and hand its keys to the collector. */
  #deleteOps(d: Doomed): DenoOp[] {
    const layout = this.#layout;
    const ops: DenoOp[] = [
      { type: "delete", key: layout.meta(d.ref) },
      { type: "delete", key: layout.idle(d.meta.bucket, d.ref) },
      { type: "set", key: layout.garbage(d.meta.uid), value: Date.now() },
    ];
    if (d.meta.nextExpiry !== null) {
      ops.push({ type: "delete", key: layout.expiry(d.meta.nextExpiry, d.ref) });
    }
    if (d.controlStamp !== null) ops.push({ type: "delete", key: layout.control(d.ref) });
    return ops;
  }

  #deleteChecks(d: Doomed): DenoCheck[] {
    return [
      { key: this.#layout.meta(d.ref), versionstamp: d.metaStamp },
      { key: this.#layout.control(d.ref), versionstamp: d.controlStamp },
    ];
  }

  /**
   * Removes every key of deleted sessions (their uids), in batches within
   * Deno KV's limits, and then their garbage records.
   */
  async #collect(uids: readonly number[]): Promise<void> {
    const kv = this.#kv;
    const layout = this.#layout;
    let batch: DenoOp[] = [];
    let budget = new Budget();
    const flush = async () => {
      if (batch.length === 0) return;
      const r = await commitAtomic(kv, [], batch);
      if (!r.ok) throw new Error("Deleting a session's keys failed");
      batch = [];
      budget = new Budget();
    };
    const add = async (op: DenoOp) => {
      if (!budget.add(op)) {
        await flush();
        budget.add(op);
      }
      batch.push(op);
    };
    for (const uid of uids) {
      for await (const e of kv.list({ prefix: layout.space(uid) }, { batchSize: 1000 })) {
        await add({ type: "delete", key: e.key });
      }
      await add({ type: "delete", key: layout.garbage(uid) });
    }
    await flush();
  }

  /**
   * Deletes a session unless another instance has it open or anyone holds
   * its lease: its meta record goes in one atomic operation checked against
   * what was read, then its keys in batches.
   */
  async deleteSession(ref: SessionRef): Promise<"deleted" | "absent" | "busy"> {
    const kv = this.#kv;
    const layout = this.#layout;
    for (let attempt = 0; attempt < 50; attempt++) {
      const [m, c] = await kv.getMany<[Meta, Control]>([layout.meta(ref), layout.control(ref)]);
      if (m.versionstamp === null) return "absent";
      if (m.value.log !== undefined) {
        await applyLog(this.#ctx, layout.meta(ref), m.value, m.versionstamp);
        continue;
      }
      if (this.#usedElsewhere(c.value, Date.now())) return "busy";
      const doomed: Doomed = {
        ref,
        meta: m.value,
        metaStamp: m.versionstamp,
        controlStamp: c.versionstamp,
      };
      const r = await commitAtomic(kv, this.#deleteChecks(doomed), this.#deleteOps(doomed));
      if (r.ok) {
        await this.#collect([m.value.uid]);
        return "deleted";
      }
      await sleep(Math.min(2 ** attempt, 20) * Math.random());
    }
    return "busy";
  }

  /**
   * Deletes the sessions idle past the cutoff, reading only the idle index
   * entries at or before it; then sweeps expired keys of the sessions that
   * have some due.
   */
  async cleanup(run: CleanupRun): Promise<void> {
    const kv = this.#kv;
    const layout = this.#layout;
    if (!run.dryRun) {
      // Keys of sessions deleted by a run that did not finish.
      const leftovers: number[] = [];
      for await (const e of kv.list({ prefix: layout.garbages() })) {
        leftovers.push(e.key[e.key.length - 1] as number);
      }
      await this.#collect(leftovers);
    }
    const n = layout.prefix.length + 2;
    let page: SessionRef[] = [];
    for await (
      const e of kv.list({ start: layout.idleStart(), end: layout.idleEnd(run.cutoffMs) }, {
        batchSize: CLEANUP_PAGE,
      })
    ) {
      run.check();
      page.push({ botId: e.key[n] as string, sessionId: e.key[n + 1] as string });
      if (page.length >= CLEANUP_PAGE) {
        await this.#cleanupPage(run, page);
        page = [];
      }
    }
    if (page.length > 0) await this.#cleanupPage(run, page);
    if (run.dryRun) return;
    for await (
      const e of kv.list({ start: layout.expiryStart(), end: layout.expiryEnd(Date.now()) })
    ) {
      run.check();
      const ref = { botId: e.key[n] as string, sessionId: e.key[n + 1] as string };
      await run.sweepExpired(ref);
    }
  }

  async #cleanupPage(run: CleanupRun, page: SessionRef[]): Promise<void> {
    const kv = this.#kv;
    const layout = this.#layout;
    const { tally } = run;
    const entries = await readMany(
      kv,
      page.flatMap((ref) => [layout.meta(ref), layout.control(ref)]),
    );
    const doomed: Doomed[] = [];
    for (let i = 0; i < page.length; i++) {
      run.check();
      const ref = page[i]!;
      const m = entries[2 * i] as Deno.KvEntryMaybe<Meta>;
      const c = entries[2 * i + 1] as Deno.KvEntryMaybe<Control>;
      if (m.versionstamp === null) continue; // Deleted meanwhile.
      tally.scanned++;
      const meta = m.value;
      if (meta.log !== undefined && !run.dryRun) {
        // A commit whose writer died after deciding it: finish it.
        await applyLog(this.#ctx, layout.meta(ref), meta, m.versionstamp);
      }
      if (!idle(meta, run.cutoffMs)) {
        run.progress();
        continue;
      }
      const local = run.local(ref);
      if (local?.inUse || this.#usedElsewhere(c.value, Date.now())) {
        tally.skippedInUse++;
        run.progress();
        continue;
      }
      if (run.dryRun) {
        tally.deleted++;
        tally.bytesFreed += meta.sizeBytes;
        run.progress();
        continue;
      }
      // Idle here too: close it (it reopens as a new session if used again).
      if (local?.open) await local.close();
      doomed.push({ ref, meta, metaStamp: m.versionstamp, controlStamp: c.versionstamp });
    }
    if (doomed.length === 0) return;
    // Let our own unpins (scheduled by closing) land before deciding.
    await sleep(0);
    await Promise.allSettled([...this.#pending]);
    const deleted: Doomed[] = [];
    for (let i = 0; i < doomed.length; i += DELETE_GROUP) {
      const group = doomed.slice(i, i + DELETE_GROUP);
      const r = await commitAtomic(
        kv,
        group.flatMap((d) => this.#deleteChecks(d)),
        group.flatMap((d) => this.#deleteOps(d)),
      );
      if (r.ok) {
        deleted.push(...group);
        continue;
      }
      // Someone wrote or pinned one of them: decide again, one by one.
      for (const d of group) {
        try {
          const again = await this.#deleteIdle(run, d.ref);
          if (again !== undefined) deleted.push(again);
        } catch (error) {
          tally.errors.push({ path: this.#path(d.ref), message: (error as Error).message });
        }
      }
    }
    try {
      await this.#collect(deleted.map((d) => d.meta.uid));
    } catch (error) {
      // The garbage records stay: the next cleanup finishes the job.
      tally.errors.push({ path: this.#location, message: (error as Error).message });
    }
    for (const d of deleted) {
      tally.deleted++;
      tally.bytesFreed += d.meta.sizeBytes;
      logger.debug("Cleanup deleted {botId}/{sessionId}", { ...d.ref });
    }
    run.progress();
  }

  /** Reads one session again and deletes it if it is still idle and unused. */
  async #deleteIdle(run: CleanupRun, ref: SessionRef): Promise<Doomed | undefined> {
    const kv = this.#kv;
    const layout = this.#layout;
    for (let attempt = 0; attempt < 5; attempt++) {
      const [m, c] = await kv.getMany<[Meta, Control]>([layout.meta(ref), layout.control(ref)]);
      if (m.versionstamp === null) return undefined;
      if (!idle(m.value, run.cutoffMs)) return undefined;
      if (run.local(ref)?.inUse || this.#usedElsewhere(c.value, Date.now())) {
        run.tally.skippedInUse++;
        return undefined;
      }
      const d: Doomed = {
        ref,
        meta: m.value,
        metaStamp: m.versionstamp,
        controlStamp: c.versionstamp,
      };
      const r = await commitAtomic(kv, this.#deleteChecks(d), this.#deleteOps(d));
      if (r.ok) return d;
    }
    return undefined;
  }

  /** A record this backend did not write, as `SessionCorruptedError`. */
  damage(ref: SessionRef, error: unknown): SessionCorruptedError | undefined {
    if (error instanceof SessionCorruptedError) return error;
    if (!(error instanceof RecordError)) return undefined;
    const path = this.#path(ref);
    return new SessionCorruptedError(`Session "${path}" is damaged: ${error.message}`, path, {
      cause: error,
    });
  }

  /**
   * Stops renewing, releases this instance's leases and pins, and waits for
   * background writes. The `Deno.Kv` stays open: it is the caller's.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#pinTimer);
    this.#pinTimer = undefined;
    // Unpins the store scheduled just before calling close() start on the next turn.
    await sleep(0);
    for (const release of [...this.#leases]) {
      await release().catch((error) => logger.warn("Releasing a lease failed: {error}", { error }));
    }
    for (const key of [...this.#pins.keys()]) {
      const held = this.#pins.get(key)!;
      held.count = 1;
      this.#unpin(key);
    }
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }
}
