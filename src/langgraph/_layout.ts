/**
 * Where the checkpoint saver keeps things inside a session's KV, and the
 * shapes of the stored values. Everything lives under the `["lg"]` prefix, so
 * a session can hold other data beside its LangGraph thread.
 *
 * | key | value |
 * | --- | --- |
 * | `["lg", "c", ns, checkpointId]` | {@linkcode CheckpointRecord} |
 * | `["lg", "c", ns, checkpointId, taskId, idx]` | {@linkcode WriteRecord}: one pending write |
 * | `["lg", "b", ns, channel, version, writerId]` | {@linkcode BlobRecord}: one channel value |
 * | `["lg", "x", ns, ownerId, nonce, i]` | chunk `i` of a payload too large for one value |
 *
 * A checkpoint's pending writes sort right after it, so one range read
 * returns a checkpoint with its writes, and a reverse listing returns each
 * checkpoint's writes just before the checkpoint.
 *
 * @module
 */
import type { KvKey } from "../../mod.ts";

/** The prefix of every key the saver writes. */
export const ROOT = "lg";

/**
 * A serialised payload: its bytes inline (`d`), or the `nonce`, chunk count
 * and byte size of chunks stored under {@linkcode chunkPrefix}.
 */
export type PayloadRef = { d: Uint8Array } | { x: [nonce: string, parts: number, size: number] };

/**
 * A checkpoint. Its body is the serialised checkpoint without channel values
 * (`cl` bytes), then the serialised metadata (`ml` bytes), then the channel
 * references as JSON (see {@linkcode ChannelRefs}).
 */
export type CheckpointRecord = PayloadRef & {
  /** The parent checkpoint's id, or `null`. */
  p: string | null;
  /** Serde type of the checkpoint. */
  ct: string;
  /** Byte length of the checkpoint in the body. */
  cl: number;
  /** Serde type of the metadata. */
  mt: string;
  /** Byte length of the metadata in the body. */
  ml: number;
};

/**
 * For each channel of a checkpoint: the version it has and the id of the
 * checkpoint that stored the value for that version (`""` when the channel
 * was emptied at that version). A channel missing here is looked up by
 * version alone.
 */
export type ChannelRefs = Record<string, [version: string, writerId: string]>;

/** One channel value at one version. */
export type BlobRecord = PayloadRef & {
  /** Serde type. */
  t: string;
};

/** One pending write of a task. */
export type WriteRecord = PayloadRef & {
  /** The channel written. */
  c: string;
  /** Serde type. */
  t: string;
  /** The task path given to `putWrites` (`""` when none). */
  p: string;
};

/** Key of a checkpoint. */
export function checkpointKey(ns: string, id: string): KvKey {
  return [ROOT, "c", ns, id];
}

/** Prefix of a namespace's checkpoints, or of every namespace's. */
export function checkpointPrefix(ns?: string): KvKey {
  return ns === undefined ? [ROOT, "c"] : [ROOT, "c", ns];
}

/** Key of a channel value written by checkpoint `writerId`. */
export function blobKey(ns: string, channel: string, version: string, writerId: string): KvKey {
  return [ROOT, "b", ns, channel, version, writerId];
}

/** Prefix of every stored value of a channel at one version. */
export function blobVersionPrefix(ns: string, channel: string, version: string): KvKey {
  return [ROOT, "b", ns, channel, version];
}

/** Key of a pending write. */
export function writeKey(ns: string, checkpointId: string, taskId: string, idx: number): KvKey {
  return [ROOT, "c", ns, checkpointId, taskId, idx];
}

/** The range of a checkpoint and its pending writes (`end` sorts after every write key). */
export function checkpointRange(ns: string, checkpointId: string): { start: KvKey; end: KvKey } {
  return { start: checkpointKey(ns, checkpointId), end: [ROOT, "c", ns, checkpointId, true] };
}

/** Whether a key under {@linkcode checkpointPrefix} is a checkpoint (else a pending write). */
export function isCheckpointKey(key: KvKey): boolean {
  return key.length === 4;
}

/** Prefix of the chunks of one payload. */
export function chunkPrefix(ns: string, ownerId: string, nonce: string): KvKey {
  return [ROOT, "x", ns, ownerId, nonce];
}
