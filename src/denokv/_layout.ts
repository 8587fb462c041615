/**
 * Where the Deno KV backend keeps things inside the user's `Deno.Kv`, under
 * a key prefix `P` (default `["sessionkv"]`):
 *
 * | key | value |
 * | --- | --- |
 * | `[...P, "idx", botId, sessionId]` | the session's meta and index record ({@linkcode Meta}) |
 * | `[...P, "ctl", botId, sessionId]` | pins and lease ({@linkcode Control}), with `expireIn` |
 * | `[...P, "idle", bucket, botId, sessionId]` | idle index: last activity rounded down to a minute |
 * | `[...P, "exp", nextExpiry, botId, sessionId]` | sessions with keys to sweep after `nextExpiry` |
 * | `[...P, "gc", uid]` | a deleted session whose keys are still being removed |
 * | `[...P, "u", uid, "d", ...]` | the session's entries (see {@linkcode Layout.dataKey}) |
 * | `[...P, "u", uid, "c", chunkId, i]` | chunks of values above one Deno KV value |
 * | `[...P, "u", uid, "q", ...]` | the session's queue |
 * | `[...P, "u", uid, "l", logId, i]` | the redo log of a commit too large for one atomic |
 *
 * `uid` is a random number drawn when the session is created: deleting a
 * session removes its meta record in one atomic operation, and the keys
 * under the old uid are removed afterwards, in batches, while a new session
 * of the same ids starts under a new uid.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { encodeKey } from "../codec/key_codec.ts";
import type { SessionRef } from "../backend.ts";

/** Deno KV's largest key that can be written, in encoded bytes. */
export const DENO_MAX_KEY_BYTES = 2048;
/** The most bytes a prefix may take, encoded (so that long keys still fit). */
export const MAX_PREFIX_BYTES = 512;
/** Bytes of a long key's hash part. */
const HASH_BYTES = 16;
/** Encoded size bound of the hash part: tag, every byte escaped, terminator. */
const HASH_PART_MAX = 2 + 2 * HASH_BYTES;
/** Encoded bytes of `"u"`, a uid (a number part) and `"d"`. */
const SPACE_BYTES = 3 + 9 + 3;
/** Granularity of the idle index. */
export const IDLE_BUCKET_MS = 60_000;

/** A session's meta record, which is also its index entry. */
export interface Meta {
  /** The uid under which the session's keys live. */
  uid: number;
  /** The last commit version. */
  version: number;
  /** Epoch ms of the newest write. */
  lastActivity: number;
  /** Bytes of encoded keys and values stored. */
  sizeBytes: number;
  /** `lastActivity` rounded down to {@linkcode IDLE_BUCKET_MS}: its idle index key. */
  bucket: number;
  /** No key expires before this (epoch ms); `null` when no key has an expiry. */
  nextExpiry: number | null;
  /** Messages in the session's queue: cleanup keeps a session with some. */
  queued: number;
  /** A decided commit whose redo log is still being applied. */
  log?: { id: number; chunks: number; version: number };
}

/** A session's pins (per backend instance) and lease, each with its deadline. */
export interface Control {
  /** Instance id → epoch ms until which it holds the session open. */
  pins: Record<string, number>;
  /** The lease holder's token and deadline. */
  lease: { holder: string; until: number } | null;
}

/** Number of zero bytes in `bytes[0, end)`: each costs one more byte when escaped. */
function escapedSize(bytes: Uint8Array, end = bytes.length): number {
  let n = end;
  for (let i = 0; i < end; i++) if (bytes[i] === 0) n++;
  return n;
}

/** A random positive integer below 2^53. */
export function randomId(): number {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (words[0]! & 0x1fffff) * 2 ** 32 + words[1]! + 1;
}

/** The session's key bytes as a Deno KV key: `[H]` or `[H, hash]`. */
export interface DataKey {
  /** The Deno KV key. */
  key: Deno.KvKey;
  /** Whether the session key was too long and is cut (`[..., head, hash]`). */
  long: boolean;
}

/**
 * The key layout under one prefix.
 *
 * Entries: a session key `K` (its encoded bytes) is stored at
 * `[...P, "u", uid, "d", K]` with `K` as a `Uint8Array` part. A `Uint8Array`
 * part is encoded as `0x01`, the bytes with `0x00` escaped as `0x00 0xFF`,
 * and `0x00`, which keeps byte order: listing a byte range `[s, e)` of
 * session keys is listing `[[..., s], [..., e])` in Deno KV.
 *
 * Deno KV's 2048-byte key limit applies to the whole key, so a session key
 * whose part would not fit (more than {@linkcode Layout.threshold} escaped
 * bytes) is stored as `[..., H, hash(K)]`, where `H` is the longest prefix of
 * `K` that fits, and `K` itself is kept in the record. Such keys sort as a
 * group right after `[..., H]` and before every other key, in the same place
 * as their true order, only unordered within the group: a listing reads a
 * group whole and sorts it. So every key Deno KV accepts works, and listing
 * order stays exact.
 */
export class Layout {
  /** The prefix. */
  readonly prefix: readonly Deno.KvKeyPart[];
  /** Largest escaped size of a session key stored whole. */
  readonly threshold: number;

  /**
   * @param prefix The prefix parts.
   * @throws {TypeError} When a part is not a valid key part.
   * @throws {RangeError} When the prefix is longer than 512 encoded bytes.
   */
  constructor(prefix: readonly Deno.KvKeyPart[]) {
    if (!Array.isArray(prefix)) {
      throw new TypeError(`prefix must be an array of key parts: received ${String(prefix)}`);
    }
    const size = encodeKey(prefix).length;
    if (size > MAX_PREFIX_BYTES) {
      throw new RangeError(
        `prefix is too long: ${size} encoded bytes (max ${MAX_PREFIX_BYTES})`,
      );
    }
    this.prefix = [...prefix];
    this.threshold = DENO_MAX_KEY_BYTES - size - SPACE_BYTES - 2 - HASH_PART_MAX;
  }

  /** The meta (index) record of a session. */
  meta(ref: SessionRef): Deno.KvKey {
    return [...this.prefix, "idx", ref.botId, ref.sessionId];
  }

  /** Where sessions are listed, optionally of one bot. */
  metas(botId?: string): Deno.KvKey {
    return botId === undefined ? [...this.prefix, "idx"] : [...this.prefix, "idx", botId];
  }

  /** The pins and lease of a session. */
  control(ref: SessionRef): Deno.KvKey {
    return [...this.prefix, "ctl", ref.botId, ref.sessionId];
  }

  /** Where control records are listed, optionally of one bot. */
  controls(botId?: string): Deno.KvKey {
    return botId === undefined ? [...this.prefix, "ctl"] : [...this.prefix, "ctl", botId];
  }

  /** The idle index entry of a session. */
  idle(bucket: number, ref: SessionRef): Deno.KvKey {
    return [...this.prefix, "idle", bucket, ref.botId, ref.sessionId];
  }

  /** The idle index, from its start. */
  idleStart(): Deno.KvKey {
    return [...this.prefix, "idle"];
  }

  /** Past every idle index entry with a bucket at or before `cutoffMs`. */
  idleEnd(cutoffMs: number): Deno.KvKey {
    return [...this.prefix, "idle", cutoffMs, true];
  }

  /** The expiry index entry of a session. */
  expiry(at: number, ref: SessionRef): Deno.KvKey {
    return [...this.prefix, "exp", at, ref.botId, ref.sessionId];
  }

  /** The expiry index, from its start. */
  expiryStart(): Deno.KvKey {
    return [...this.prefix, "exp"];
  }

  /** Past every expiry index entry due at or before `now`. */
  expiryEnd(now: number): Deno.KvKey {
    return [...this.prefix, "exp", now, true];
  }

  /** A deleted session's keys still to remove. */
  garbage(uid: number): Deno.KvKey {
    return [...this.prefix, "gc", uid];
  }

  /** Where the garbage records are listed. */
  garbages(): Deno.KvKey {
    return [...this.prefix, "gc"];
  }

  /** Every key of a session's storage. */
  space(uid: number): Deno.KvKey {
    return [...this.prefix, "u", uid];
  }

  /** The entries of a session. */
  data(uid: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "d"];
  }

  /** The chunks of one large value. */
  chunks(uid: number, chunkId: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "c", chunkId];
  }

  /** One chunk of a large value. */
  chunk(uid: number, chunkId: number, i: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "c", chunkId, i];
  }

  /** The redo log of one commit. */
  log(uid: number, logId: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "l", logId];
  }

  /** One record of a redo log. */
  logChunk(uid: number, logId: number, i: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "l", logId, i];
  }

  /** A queued message's state. */
  message(uid: number, id: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "q", "m", id];
  }

  /** A queued message's payload. */
  payload(uid: number, id: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "q", "p", id];
  }

  /** A queued message's place in the delivery schedule. */
  schedule(uid: number, at: number, id: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "q", "t", at, id];
  }

  /** The delivery schedule, from its start. */
  scheduleStart(uid: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "q", "t"];
  }

  /** Past every schedule entry due at or before `now`. */
  scheduleEnd(uid: number, now: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "q", "t", now, true];
  }

  /** Past every schedule entry. */
  scheduleAll(uid: number): Deno.KvKey {
    return [...this.prefix, "u", uid, "q", "t", true];
  }

  /** Whether a session key is stored whole. */
  isShort(key: Uint8Array): boolean {
    return escapedSize(key) <= this.threshold;
  }

  /** The longest prefix of `key` whose escaped size fits {@linkcode threshold}. */
  head(key: Uint8Array): Uint8Array {
    let size = 0;
    let i = 0;
    for (; i < key.length; i++) {
      const cost = key[i] === 0 ? 2 : 1;
      if (size + cost > this.threshold) break;
      size += cost;
    }
    return key.subarray(0, i);
  }

  /** The Deno KV key of a session key. */
  dataKey(uid: number, key: Uint8Array): DataKey {
    const base = this.data(uid);
    if (this.isShort(key)) return { key: [...base, key], long: false };
    const hash = new Uint8Array(createHash("sha256").update(key).digest().subarray(0, HASH_BYTES));
    return { key: [...base, this.head(key).slice(), hash], long: true };
  }

  /**
   * The Deno KV range that holds every session key in `[start, end)` (and
   * possibly a few more, to be filtered out).
   */
  dataRange(
    uid: number,
    start: Uint8Array,
    end: Uint8Array,
  ): { start: Deno.KvKey; end: Deno.KvKey } {
    const base = this.data(uid);
    const lo = this.isShort(start) ? start : this.head(start);
    let hi: Uint8Array;
    if (this.isShort(end)) {
      hi = end;
    } else {
      // Past the whole group of `end`'s head: [..., H] < [..., H, hash] < [..., H ++ 0x00].
      const h = this.head(end);
      hi = new Uint8Array(h.length + 1);
      hi.set(h);
    }
    return { start: [...base, lo.slice()], end: [...base, hi] };
  }
}

/** Encoded size of a Deno KV key. */
export function keySize(key: Deno.KvKey): number {
  return encodeKey(key).length;
}
