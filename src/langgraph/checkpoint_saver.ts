/**
 * `SessionCheckpointSaver`: a LangGraph.js checkpointer that keeps each
 * thread in its own session of a {@linkcode SessionStore}.
 *
 * @module
 */
import type { RunnableConfig } from "@langchain/core/runnables";
import {
  BaseCheckpointSaver,
  type ChannelVersions,
  type Checkpoint,
  type CheckpointListOptions,
  type CheckpointMetadata,
  type CheckpointTuple,
  getCheckpointId,
  type PendingWrite,
  type SerializerProtocol,
} from "@langchain/langgraph-checkpoint";
import type { AtomicCheck, SessionKv, SessionStore } from "../../mod.ts";
import { commitInOrder, fits } from "./_commit.ts";
import { checkpointPrefix } from "./_layout.ts";
import { matchesFilter } from "./_metadata_filter.ts";
import { RefsCache } from "./_refs_cache.ts";
import {
  decodeRecord,
  groupReverse,
  loadTuple,
  readCheckpoint,
  type ReadContext,
  recordRefs,
  type StoredCheckpoint,
} from "./_reader.ts";
import {
  channelRefs,
  needsParentRefs,
  type PlannedWrite,
  planPut,
  planWrites,
  type WriteContext,
} from "./_writer.ts";

/** Deno KV's value size limit, the default {@linkcode SessionCheckpointSaverOptions.chunkBytes}. */
const DEFAULT_CHUNK_BYTES = 65536;

/** Options of {@linkcode SessionCheckpointSaver}. */
export interface SessionCheckpointSaverOptions {
  /** The bot whose sessions hold the threads: thread `t` is session `(botId, t)`. */
  botId: string;
  /**
   * Serializer of checkpoints, metadata and channel values.
   * @default {a `JsonPlusSerializer`, as every LangGraph saver}
   */
  serde?: SerializerProtocol;
  /**
   * Largest KV value the saver writes; larger payloads are split into chunks
   * of this size. Must not exceed the store's `maxValueBytes`.
   * @default {65536}
   */
  chunkBytes?: number;
}

interface Configurable {
  thread_id?: unknown;
  checkpoint_ns?: unknown;
  checkpoint_id?: unknown;
}

function configurableOf(config: RunnableConfig, what: string): Configurable {
  const configurable = config?.configurable;
  if (typeof configurable !== "object" || configurable === null) {
    throw new TypeError(`Cannot ${what}: config.configurable is missing`);
  }
  return configurable;
}

function threadIdOf(value: unknown, what: string): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  throw new TypeError(
    `Cannot ${what}: config.configurable.thread_id must be a string: received ${String(value)}`,
  );
}

function namespaceOf(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") {
    throw new TypeError(`checkpoint_ns must be a string: received ${String(value)}`);
  }
  return value;
}

/**
 * A LangGraph.js checkpointer (`BaseCheckpointSaver`) on a
 * {@linkcode SessionStore}: each thread lives in its own session
 * (`thread_id` = session id of bot `botId`), subgraph namespaces
 * (`checkpoint_ns`) in the same file.
 *
 * Channel values are stored once per version: a `put` writes only the
 * channels in `newVersions`, and a checkpoint refers to older values by
 * version. Values larger than one KV value are split into chunks; the
 * checkpoint record is committed last, so a reader never sees half a
 * checkpoint (a `put` that fails midway leaves only unreferenced chunks,
 * removed with the thread). A fork that reuses a channel version keeps both
 * branches' values: each checkpoint names the checkpoint that wrote each of
 * its values. `deleteThread` removes the thread's session, and the store's
 * idle-session `cleanup()` removes idle threads.
 *
 * Uses only the public `SessionStore` and `SessionKv` API; every key lives
 * under `["lg"]`, so the session may hold other data too. Permissions: those
 * of the store.
 *
 * @example Checkpoints of a thread
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { SessionCheckpointSaver } from "@sessionkv/core/langgraph";
 * import { emptyCheckpoint } from "@langchain/langgraph-checkpoint";
 * import { deepEqual, equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await using store = new SessionStore({ root });
 * const saver = new SessionCheckpointSaver(store, { botId: "support-bot" });
 *
 * const checkpoint = { ...emptyCheckpoint(), channel_values: { topic: "billing" } };
 * checkpoint.channel_versions = { topic: 1 };
 * const config = await saver.put(
 *   { configurable: { thread_id: "user-42" } },
 *   checkpoint,
 *   { source: "input", step: -1, parents: {} },
 *   { topic: 1 },
 * );
 * await saver.putWrites(config, [["topic", "refunds"]], "task-1");
 *
 * const tuple = await saver.getTuple({ configurable: { thread_id: "user-42" } });
 * deepEqual(tuple?.checkpoint.channel_values, { topic: "billing" });
 * deepEqual(tuple?.pendingWrites, [["task-1", "topic", "refunds"]]);
 *
 * await saver.deleteThread("user-42");
 * equal(await saver.getTuple({ configurable: { thread_id: "user-42" } }), undefined);
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class SessionCheckpointSaver extends BaseCheckpointSaver {
  readonly #store: SessionStore;
  readonly #botId: string;
  readonly #chunkBytes: number;
  readonly #refs = new RefsCache();

  /**
   * Creates a saver for the threads of bot `options.botId` in `store`.
   *
   * @param store The store holding the sessions.
   * @param options `botId`, and optionally `serde` and `chunkBytes`.
   * @throws {TypeError} When `botId` is not a non-empty string.
   * @throws {RangeError} When `chunkBytes` is not an integer of at least 1024.
   */
  constructor(store: SessionStore, options: SessionCheckpointSaverOptions) {
    super(options?.serde);
    if (typeof options?.botId !== "string" || options.botId.length === 0) {
      throw new TypeError(`botId must be a non-empty string: received ${String(options?.botId)}`);
    }
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1024) {
      throw new RangeError(
        `chunkBytes must be an integer of at least 1024: received ${chunkBytes}`,
      );
    }
    this.#store = store;
    this.#botId = options.botId;
    this.#chunkBytes = chunkBytes;
  }

  /** The bot whose sessions hold the threads. */
  get botId(): string {
    return this.#botId;
  }

  /**
   * Reads a checkpoint with its channel values and pending writes: the one
   * `checkpoint_id` names, else the thread's latest in `checkpoint_ns`.
   *
   * @param config `configurable.thread_id`, optional `checkpoint_ns` and `checkpoint_id`.
   * @returns The tuple, or `undefined` when there is none (or no `thread_id`).
   */
  async getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined> {
    const configurable: Configurable = config?.configurable ?? {};
    if (configurable.thread_id === undefined) return undefined;
    const threadId = threadIdOf(configurable.thread_id, "read checkpoint");
    const ns = namespaceOf(configurable.checkpoint_ns);
    const id = getCheckpointId(config);
    using kv = await this.#store.openKv(this.#botId, threadId);
    let found: StoredCheckpoint | undefined;
    if (id) {
      found = await readCheckpoint(kv, ns, id);
    } else {
      const entries = kv.list({ prefix: checkpointPrefix(ns) }, { reverse: true, batchSize: 16 });
      for await (const stored of groupReverse(entries)) {
        found = stored;
        break;
      }
    }
    if (found === undefined) return undefined;
    const ctx = this.#readContext(kv, threadId, ns);
    return await loadTuple(ctx, await decodeRecord(ctx, found.id, found.record), found.writes);
  }

  /**
   * Lists checkpoints, newest first within each thread and namespace. Without
   * `thread_id`, walks every session of the bot; without `checkpoint_ns`,
   * every namespace.
   *
   * @param config Optional `thread_id`, `checkpoint_ns`, `checkpoint_id`.
   * @param options `limit`, `before` (checkpoints older than its
   *   `checkpoint_id`), `filter` (metadata entries to match).
   * @returns The matching tuples.
   */
  async *list(
    config: RunnableConfig,
    options: CheckpointListOptions = {},
  ): AsyncGenerator<CheckpointTuple> {
    const configurable: Configurable = config?.configurable ?? {};
    const { limit, before, filter } = options;
    let remaining = limit ?? Infinity;
    if (remaining <= 0) return;
    const ns = configurable.checkpoint_ns === undefined
      ? undefined
      : namespaceOf(configurable.checkpoint_ns);
    const onlyId = typeof configurable.checkpoint_id === "string" && configurable.checkpoint_id
      ? configurable.checkpoint_id
      : undefined;
    const beforeId = before === undefined ? undefined : getCheckpointId(before) || undefined;
    const threads = configurable.thread_id === undefined
      ? this.#threadIds()
      : [threadIdOf(configurable.thread_id, "list checkpoints")];
    for await (const threadId of threads) {
      using kv = await this.#store.openKv(this.#botId, threadId);
      const candidates = onlyId !== undefined && ns !== undefined
        ? this.#one(kv, ns, onlyId)
        : groupReverse(this.#entries(kv, ns, beforeId));
      for await (const stored of candidates) {
        if (onlyId !== undefined && stored.id !== onlyId) continue;
        if (beforeId !== undefined && stored.id >= beforeId) continue;
        const ctx = this.#readContext(kv, threadId, stored.ns);
        const decoded = await decodeRecord(ctx, stored.id, stored.record);
        if (!matchesFilter(decoded.metadata, filter)) continue;
        yield await loadTuple(ctx, decoded, stored.writes);
        if (--remaining <= 0) return;
      }
    }
  }

  /**
   * Stores a checkpoint. Only the channels in `newVersions` are written; the
   * checkpoint refers to the values of the others by version. Large values
   * are chunked and written first; the checkpoint becomes visible in the
   * final commit.
   *
   * @param config `configurable.thread_id`, optional `checkpoint_ns`, and the
   *   parent's `checkpoint_id`.
   * @param checkpoint The checkpoint.
   * @param metadata Its metadata.
   * @param newVersions The channels whose version changed since the parent.
   * @returns The config of the stored checkpoint.
   * @throws {TypeError} When `config.configurable` or `thread_id` is missing.
   */
  async put(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    newVersions: ChannelVersions,
  ): Promise<RunnableConfig> {
    const configurable = configurableOf(config, "put checkpoint");
    const threadId = threadIdOf(configurable.thread_id, "put checkpoint");
    const ns = namespaceOf(configurable.checkpoint_ns);
    const parentId = typeof configurable.checkpoint_id === "string" && configurable.checkpoint_id
      ? configurable.checkpoint_id
      : null;
    const changed = newVersions ?? {};
    using kv = await this.#store.openKv(this.#botId, threadId);
    const parentRefs = parentId !== null && needsParentRefs(checkpoint, changed)
      ? this.#refs.get(threadId, ns, parentId) ?? await recordRefs(kv, ns, parentId)
      : undefined;
    const refs = channelRefs(checkpoint, changed, parentRefs);
    const plan = await planPut(
      this.#writeContext(ns),
      parentId,
      checkpoint,
      metadata,
      changed,
      refs,
    );
    await commitInOrder(kv, plan.early, [plan.record]);
    this.#refs.set(threadId, ns, checkpoint.id, refs);
    return {
      configurable: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpoint.id },
    };
  }

  /**
   * Stores a task's pending writes for a checkpoint, all in one commit when
   * they fit (they do unless there are hundreds). A regular write already
   * stored under the same task id and index is kept; special writes
   * (errors, interrupts) replace theirs.
   *
   * @param config `thread_id`, `checkpoint_ns` and `checkpoint_id` of the checkpoint.
   * @param writes `[channel, value]` pairs.
   * @param taskId The task.
   * @param taskPath The task's path; writes come back ordered by path, task id, index.
   * @throws {TypeError} When `thread_id` or `checkpoint_id` is missing.
   */
  async putWrites(
    config: RunnableConfig,
    writes: PendingWrite[],
    taskId: string,
    taskPath = "",
  ): Promise<void> {
    const configurable = configurableOf(config, "put writes");
    const threadId = threadIdOf(configurable.thread_id, "put writes");
    const ns = namespaceOf(configurable.checkpoint_ns);
    const checkpointId = configurable.checkpoint_id;
    if (typeof checkpointId !== "string" || checkpointId.length === 0) {
      throw new TypeError("Cannot put writes: config.configurable.checkpoint_id is missing");
    }
    if (writes.length === 0) return;
    const planned = await planWrites(
      this.#writeContext(ns),
      checkpointId,
      writes,
      taskId,
      taskPath,
    );
    using kv = await this.#store.openKv(this.#botId, threadId);
    // Optimistic: one commit that checks the regular writes are new.
    const regular = planned.filter((w) => w.idx >= 0).map((w) => w.head.key);
    if (regular.length <= 100 && headsFit(planned, regular.length)) {
      const checks: AtomicCheck[] = regular.map((key) => ({ key, versionstamp: null }));
      const chunks = planned.flatMap((w) => w.chunks);
      if (await commitInOrder(kv, chunks, planned.map((w) => w.head), checks)) return;
    }
    // Keep the regular writes stored already.
    const existing = new Set<string>();
    for (let i = 0; i < regular.length; i += 10) {
      for (const entry of await kv.getMany(regular.slice(i, i + 10))) {
        if (entry.versionstamp !== null) existing.add(JSON.stringify(entry.key));
      }
    }
    const fresh = planned.filter((w) => w.idx < 0 || !existing.has(JSON.stringify(w.head.key)));
    const chunks = fresh.flatMap((w) => w.chunks);
    const heads = fresh.map((w) => w.head);
    if (headsFit(fresh, 0)) await commitInOrder(kv, chunks, heads);
    else await commitInOrder(kv, [...chunks, ...heads], []);
  }

  /**
   * Deletes a thread: removes its session (`SessionStore.deleteSession`).
   *
   * @param threadId The thread (session) id.
   */
  async deleteThread(threadId: string): Promise<void> {
    const id = threadIdOf(threadId, "delete thread");
    this.#refs.deleteThread(id);
    await this.#store.deleteSession(this.#botId, id);
  }

  async *#threadIds(): AsyncIterable<string> {
    for await (const info of this.#store.sessions({ botId: this.#botId })) yield info.sessionId;
  }

  async *#one(kv: SessionKv, ns: string, id: string): AsyncGenerator<StoredCheckpoint> {
    const stored = await readCheckpoint(kv, ns, id);
    if (stored !== undefined) yield stored;
  }

  /** Checkpoints and writes, newest first (each checkpoint's writes before it). */
  #entries(kv: SessionKv, ns: string | undefined, beforeId: string | undefined) {
    const prefix = checkpointPrefix(ns);
    const selector = ns !== undefined && beforeId !== undefined
      ? { prefix, end: [...prefix, beforeId] }
      : { prefix };
    return kv.list(selector, { reverse: true, batchSize: 100 });
  }

  #readContext(kv: SessionKv, threadId: string, ns: string): ReadContext {
    return { kv, serde: this.serde, threadId, ns, firstVersion: this.getNextVersion(undefined) };
  }

  #writeContext(ns: string): WriteContext {
    return { serde: this.serde, ns, chunkBytes: this.#chunkBytes };
  }
}

/** Whether the heads of `planned` and `checks` checks fit one commit. */
function headsFit(planned: PlannedWrite[], checks: number): boolean {
  let bytes = 0;
  for (const w of planned) bytes += w.head.size + (w.idx >= 0 && checks > 0 ? 128 : 0);
  return fits(bytes, planned.length + checks);
}
