/**
 * Reading checkpoints back: a record's body, its channel values (each looked
 * up by the version and writer the record names), its pending writes in
 * `(task path, task id, index)` order, and the pending-sends migration of
 * checkpoints older than format 4.
 *
 * @module
 */
import {
  type Checkpoint,
  type CheckpointMetadata,
  type CheckpointPendingWrite,
  type CheckpointTuple,
  compareWritesSortKeys,
  maxChannelVersion,
  type SerializerProtocol,
  TASKS,
  writesSortKey,
} from "@langchain/langgraph-checkpoint";
import type { KvEntry, KvKey, SessionKv } from "../../mod.ts";
import {
  blobKey,
  type BlobRecord,
  blobVersionPrefix,
  type ChannelRefs,
  checkpointKey,
  checkpointRange,
  type CheckpointRecord,
  isCheckpointKey,
  type WriteRecord,
} from "./_layout.ts";
import { readPayload } from "./_payload.ts";

const decoder = new TextDecoder();

/** What a reader needs: the session, the serializer and the namespace. */
export interface ReadContext {
  kv: SessionKv;
  serde: SerializerProtocol;
  threadId: string;
  ns: string;
  /** The version given to a channel that had none (`getNextVersion(undefined)`). */
  firstVersion: number | string;
}

/** A record's body, decoded. */
export interface DecodedRecord {
  id: string;
  parentId: string | null;
  /** The checkpoint without its channel values. */
  checkpoint: Omit<Checkpoint, "channel_values">;
  metadata: CheckpointMetadata;
  refs: ChannelRefs;
}

/** Decodes a checkpoint record's body. */
export async function decodeRecord(
  ctx: ReadContext,
  id: string,
  record: CheckpointRecord,
): Promise<DecodedRecord> {
  const body = await readPayload(ctx.kv, ctx.ns, id, record);
  const metaEnd = record.cl + record.ml;
  const [checkpoint, metadata] = await Promise.all([
    ctx.serde.loadsTyped(record.ct, body.subarray(0, record.cl)),
    ctx.serde.loadsTyped(record.mt, body.subarray(record.cl, metaEnd)),
  ]);
  const refs = metaEnd < body.length ? JSON.parse(decoder.decode(body.subarray(metaEnd))) : {};
  return { id, parentId: record.p, checkpoint, metadata, refs };
}

/** Decodes only the channel references of a record (for a child's `put`). */
export async function recordRefs(
  kv: SessionKv,
  ns: string,
  id: string,
): Promise<ChannelRefs | undefined> {
  const entry = await kv.get<CheckpointRecord>(checkpointKey(ns, id));
  if (entry.value === null) return undefined;
  const record = entry.value;
  const body = await readPayload(kv, ns, id, record);
  const start = record.cl + record.ml;
  return start < body.length ? JSON.parse(decoder.decode(body.subarray(start))) : {};
}

async function getAll<T>(kv: SessionKv, keys: KvKey[]): Promise<(T | null)[]> {
  const groups: Promise<{ value: T | null }[]>[] = [];
  for (let i = 0; i < keys.length; i += 10) {
    groups.push(kv.getMany<T[]>(keys.slice(i, i + 10)));
  }
  return (await Promise.all(groups)).flat().map((entry) => entry.value);
}

/** A stored value of `channel` at `version` whose writer checkpoint exists. */
async function findBlob(
  ctx: ReadContext,
  selfId: string,
  channel: string,
  version: string,
): Promise<{ writer: string; blob: BlobRecord } | undefined> {
  const list = ctx.kv.list<BlobRecord>({ prefix: blobVersionPrefix(ctx.ns, channel, version) }, {
    reverse: true,
  });
  for await (const entry of list) {
    const writer = entry.key[5] as string;
    if (writer === selfId || (await ctx.kv.get(checkpointKey(ctx.ns, writer))).value !== null) {
      return { writer, blob: entry.value };
    }
  }
  return undefined;
}

/** The channel values of a checkpoint, from the versions it names. */
export async function loadChannelValues(
  ctx: ReadContext,
  decoded: DecodedRecord,
): Promise<Record<string, unknown>> {
  const wanted: { channel: string; writer: string; key: KvKey }[] = [];
  const unresolved: { channel: string; version: string }[] = [];
  for (const [channel, rawVersion] of Object.entries(decoded.checkpoint.channel_versions ?? {})) {
    const version = String(rawVersion);
    const ref = Object.hasOwn(decoded.refs, channel) ? decoded.refs[channel] : undefined;
    if (ref !== undefined && ref[0] === version) {
      if (ref[1] === "") continue; // emptied at this version
      wanted.push({ channel, writer: ref[1], key: blobKey(ctx.ns, channel, version, ref[1]) });
    } else {
      unresolved.push({ channel, version });
    }
  }
  const found: { channel: string; writer: string; blob: BlobRecord }[] = [];
  const blobs = await getAll<BlobRecord>(ctx.kv, wanted.map((w) => w.key));
  blobs.forEach((blob, i) => {
    if (blob !== null) found.push({ channel: wanted[i]!.channel, writer: wanted[i]!.writer, blob });
  });
  for (const { channel, version } of unresolved) {
    const hit = await findBlob(ctx, decoded.id, channel, version);
    if (hit !== undefined) found.push({ channel, ...hit });
  }
  const values = new Map<string, unknown>();
  await Promise.all(found.map(async ({ channel, writer, blob }) => {
    const bytes = await readPayload(ctx.kv, ctx.ns, writer, blob);
    values.set(channel, await ctx.serde.loadsTyped(blob.t, bytes));
  }));
  // In the checkpoint's channel order; fromEntries also keeps "__proto__" an own key.
  const order = Object.keys(decoded.checkpoint.channel_versions ?? {});
  return Object.fromEntries(
    order.filter((channel) => values.has(channel)).map((channel) => [channel, values.get(channel)]),
  );
}

/** A checkpoint record and the entries of its pending writes, as stored. */
export interface StoredCheckpoint {
  ns: string;
  id: string;
  record: CheckpointRecord;
  writes: KvEntry<WriteRecord>[];
}

/**
 * Groups a reverse listing under {@linkcode checkpointPrefix} (each
 * checkpoint's writes come just before it) into checkpoints with their
 * writes.
 */
export async function* groupReverse(
  entries: AsyncIterable<KvEntry<unknown>>,
): AsyncGenerator<StoredCheckpoint> {
  let writes: KvEntry<WriteRecord>[] = [];
  let owner: KvKey | undefined;
  const sameOwner = (key: KvKey) =>
    owner !== undefined && key[2] === owner[2] && key[3] === owner[3];
  for await (const entry of entries) {
    if (isCheckpointKey(entry.key)) {
      yield {
        ns: entry.key[2] as string,
        id: entry.key[3] as string,
        record: entry.value as CheckpointRecord,
        writes: sameOwner(entry.key) ? writes : [],
      };
      writes = [];
      owner = undefined;
    } else {
      if (!sameOwner(entry.key)) {
        writes = [];
        owner = entry.key;
      }
      writes.push(entry as KvEntry<WriteRecord>);
    }
  }
}

/** Reads one checkpoint with its writes in one range read. */
export async function readCheckpoint(
  kv: SessionKv,
  ns: string,
  id: string,
): Promise<StoredCheckpoint | undefined> {
  let record: CheckpointRecord | undefined;
  const writes: KvEntry<WriteRecord>[] = [];
  for await (const entry of kv.list(checkpointRange(ns, id), { batchSize: 64 })) {
    if (isCheckpointKey(entry.key)) record = entry.value as CheckpointRecord;
    else writes.push(entry as KvEntry<WriteRecord>);
  }
  return record === undefined ? undefined : { ns, id, record, writes };
}

/**
 * Pending writes in `writesSortKey` order: `(task path, task id, index)`.
 *
 * @param checkpointId The checkpoint they belong to.
 * @param entries Their stored entries, in any order.
 */
export async function loadWrites(
  ctx: ReadContext,
  checkpointId: string,
  entries: KvEntry<WriteRecord>[],
): Promise<CheckpointPendingWrite[]> {
  const keyed = entries.map((entry) => ({
    sortKey: writesSortKey(entry.value.p, entry.key[4] as string, entry.key[5] as number),
    entry,
  }));
  keyed.sort((a, b) => compareWritesSortKeys(a.sortKey, b.sortKey));
  return await Promise.all(keyed.map(async ({ sortKey, entry }) => {
    const bytes = await readPayload(ctx.kv, ctx.ns, checkpointId, entry.value);
    const value = await ctx.serde.loadsTyped(entry.value.t, bytes);
    return [sortKey[1], entry.value.c, value] as CheckpointPendingWrite;
  }));
}

/** The pending sends (`TASKS` writes) of a checkpoint, in write order. */
async function pendingSends(ctx: ReadContext, checkpointId: string): Promise<unknown[]> {
  const entries: KvEntry<WriteRecord>[] = [];
  const list = ctx.kv.list<WriteRecord>({ prefix: checkpointKey(ctx.ns, checkpointId) });
  for await (const entry of list) if (entry.value.c === TASKS) entries.push(entry);
  return (await loadWrites(ctx, checkpointId, entries)).map((write) => write[2]);
}

/**
 * Builds the tuple of a decoded record. Checkpoints of format < 4 get the
 * parent's pending sends (`TASKS` writes) as their `TASKS` channel.
 */
export async function loadTuple(
  ctx: ReadContext,
  decoded: DecodedRecord,
  writes: KvEntry<WriteRecord>[],
): Promise<CheckpointTuple> {
  const [channelValues, pendingWrites] = await Promise.all([
    loadChannelValues(ctx, decoded),
    loadWrites(ctx, decoded.id, writes),
  ]);
  const checkpoint = { ...decoded.checkpoint, channel_values: channelValues } as Checkpoint;
  checkpoint.channel_versions ??= {};
  checkpoint.versions_seen ??= {};
  if (checkpoint.v < 4 && decoded.parentId !== null) {
    checkpoint.channel_values[TASKS] = await pendingSends(ctx, decoded.parentId);
    const versions = Object.values(checkpoint.channel_versions);
    checkpoint.channel_versions[TASKS] = versions.length > 0
      ? maxChannelVersion(...versions)
      : ctx.firstVersion;
  }
  const configurable = { thread_id: ctx.threadId, checkpoint_ns: ctx.ns };
  const tuple: CheckpointTuple = {
    config: { configurable: { ...configurable, checkpoint_id: decoded.id } },
    checkpoint,
    metadata: decoded.metadata,
    pendingWrites,
  };
  if (decoded.parentId !== null) {
    tuple.parentConfig = { configurable: { ...configurable, checkpoint_id: decoded.parentId } };
  }
  return tuple;
}
