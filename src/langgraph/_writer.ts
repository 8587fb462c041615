/**
 * Planning writes: turns a checkpoint (only the channels whose version
 * changed) or a task's pending writes into KV mutations, with large payloads
 * split into chunks that are committed before the records naming them.
 *
 * @module
 */
import type {
  ChannelVersions,
  Checkpoint,
  CheckpointMetadata,
  PendingWrite,
  SerializerProtocol,
} from "@langchain/langgraph-checkpoint";
import { WRITES_IDX_MAP } from "@langchain/langgraph-checkpoint";
import { keyBytes, type SetMutation, stringBytes } from "./_commit.ts";
import {
  blobKey,
  type BlobRecord,
  type ChannelRefs,
  checkpointKey,
  type CheckpointRecord,
  writeKey,
  type WriteRecord,
} from "./_layout.ts";
import { planPayload, refBytes } from "./_payload.ts";

const encoder = new TextEncoder();

/** What a planner needs. */
export interface WriteContext {
  serde: SerializerProtocol;
  ns: string;
  /** Largest value the store accepts. */
  chunkBytes: number;
}

/** Mutations of a `put`: `early` (chunks, channel values), then `record`. */
export interface PutPlan {
  early: SetMutation[];
  record: SetMutation;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/**
 * Which stored value each channel of `checkpoint` refers to: this
 * checkpoint's for channels in `newVersions`, the parent's reference for the
 * others when the parent had the same version.
 */
export function channelRefs(
  checkpoint: Checkpoint,
  newVersions: ChannelVersions,
  parentRefs: ChannelRefs | undefined,
): ChannelRefs {
  const refs: ChannelRefs = Object.create(null);
  for (const [channel, rawVersion] of Object.entries(checkpoint.channel_versions ?? {})) {
    const version = String(rawVersion);
    if (Object.hasOwn(newVersions, channel) && String(newVersions[channel]) === version) {
      const present = Object.hasOwn(checkpoint.channel_values ?? {}, channel);
      refs[channel] = [version, present ? checkpoint.id : ""];
      continue;
    }
    const inherited = parentRefs !== undefined && Object.hasOwn(parentRefs, channel)
      ? parentRefs[channel]
      : undefined;
    if (inherited !== undefined && inherited[0] === version) refs[channel] = inherited;
  }
  return refs;
}

/** Whether some channel of `checkpoint` keeps a value written before it. */
export function needsParentRefs(checkpoint: Checkpoint, newVersions: ChannelVersions): boolean {
  for (const [channel, version] of Object.entries(checkpoint.channel_versions ?? {})) {
    if (!Object.hasOwn(newVersions, channel) || String(newVersions[channel]) !== String(version)) {
      return true;
    }
  }
  return false;
}

/** Plans a `put`: the changed channel values, then the record. */
export async function planPut(
  ctx: WriteContext,
  parentId: string | null,
  checkpoint: Checkpoint,
  metadata: CheckpointMetadata,
  newVersions: ChannelVersions,
  refs: ChannelRefs,
): Promise<PutPlan> {
  const { channel_values: values = {}, ...rest } = checkpoint;
  const changed = Object.entries(newVersions).filter(([channel]) => Object.hasOwn(values, channel));
  const [[ct, cbytes], [mt, mbytes], ...blobs] = await Promise.all([
    ctx.serde.dumpsTyped(rest),
    ctx.serde.dumpsTyped(metadata),
    ...changed.map(([channel]) => ctx.serde.dumpsTyped(values[channel])),
  ]);
  const early: SetMutation[] = [];
  changed.forEach(([channel, version], i) => {
    const [t, bytes] = blobs[i]!;
    const key = blobKey(ctx.ns, channel, String(version), checkpoint.id);
    const overhead = keyBytes(key) + stringBytes(t) + 64;
    const { ref, chunks } = planPayload(bytes, overhead, ctx.ns, checkpoint.id, ctx.chunkBytes);
    early.push(...chunks);
    const value: BlobRecord = { t, ...ref };
    early.push({ key, value, size: overhead + refBytes(ref) });
  });
  const body = concat([cbytes, mbytes, encoder.encode(JSON.stringify(refs))]);
  const key = checkpointKey(ctx.ns, checkpoint.id);
  const overhead = keyBytes(key) + stringBytes(ct) + stringBytes(mt) +
    stringBytes(parentId ?? "") + 128;
  const { ref, chunks } = planPayload(body, overhead, ctx.ns, checkpoint.id, ctx.chunkBytes);
  early.push(...chunks);
  const value: CheckpointRecord = {
    p: parentId,
    ct,
    cl: cbytes.length,
    mt,
    ml: mbytes.length,
    ...ref,
  };
  return { early, record: { key, value, size: overhead + refBytes(ref) } };
}

/** One planned pending write. */
export interface PlannedWrite {
  /** Index: the write's position, or a negative index for special channels. */
  idx: number;
  head: SetMutation;
  chunks: SetMutation[];
}

/** Plans the pending writes of one task. */
export async function planWrites(
  ctx: WriteContext,
  checkpointId: string,
  writes: PendingWrite[],
  taskId: string,
  taskPath: string,
): Promise<PlannedWrite[]> {
  const dumped = await Promise.all(writes.map(([, value]) => ctx.serde.dumpsTyped(value)));
  return writes.map(([channel, _], i) => {
    const idx = WRITES_IDX_MAP[channel] ?? i;
    const [t, bytes] = dumped[i]!;
    const key = writeKey(ctx.ns, checkpointId, taskId, idx);
    const overhead = keyBytes(key) + stringBytes(channel) + stringBytes(t) +
      stringBytes(taskPath) + 96;
    const { ref, chunks } = planPayload(bytes, overhead, ctx.ns, checkpointId, ctx.chunkBytes);
    const value: WriteRecord = { c: channel, t, p: taskPath, ...ref };
    return { idx, head: { key, value, size: overhead + refBytes(ref) }, chunks };
  });
}
