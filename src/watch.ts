/**
 * `watch()`: a stream of the current state of up to 10 keys, re-read when a
 * commit in this process touches one of them, when another process commits
 * to the session (noticed by polling the engine's change token while the
 * watch is read), and when a watched key expires.
 *
 * @module
 */
import { compareBytes, encodeKey } from "./codec/key_codec.ts";
import type { CommitPlan, KvAccess, KvRow } from "./engine.ts";
import { MAX_WATCH_KEYS } from "./limits.ts";
import { checkReadKey, entryOf } from "./list.ts";
import type { KvEntryMaybe, KvKey } from "./types.ts";

/** How often a waiting watch checks for commits of other processes. */
const POLL_MS = 100;

/** Options of `watch()`. */
export interface KvWatchOptions {
  /** Also emit when a commit touched a key without changing it (e.g. deleted a missing key). */
  raw?: boolean;
}

function touches(plan: CommitPlan, keys: Uint8Array[]): boolean {
  for (const m of plan.mutations) {
    for (const key of keys) if (compareBytes(m.key, key) === 0) return true;
  }
  return false;
}

/**
 * Opens a watch stream.
 *
 * @throws {TypeError} Synchronously on more than 10 keys or an invalid key.
 * @throws {Error} Whatever `register` throws (a closed view).
 */
export function watchKeys<T extends readonly unknown[]>(
  access: KvAccess,
  keys: readonly KvKey[],
  options: KvWatchOptions | undefined,
  register: (stop: () => void) => () => void,
): ReadableStream<{ [K in keyof T]: KvEntryMaybe<T[K]> }> {
  if (!Array.isArray(keys)) encodeKey(keys);
  // Deno KV's order: the types of every key part, then the handle (a closed
  // view throws from `register`), then the key count, then the key sizes.
  const encoded = keys.map((key) => encodeKey(key));
  const raw = options?.raw ?? false;

  let dirty = true; // The first read always delivers the current state.
  let touched = false;
  let ended = false;
  let wake: (() => void) | undefined;
  let last: (number | null)[] | undefined;
  let token: string | undefined;
  let expiryTimer: ReturnType<typeof setTimeout> | undefined;
  let controller: ReadableStreamDefaultController<unknown> | undefined;
  let unsubscribe = () => {};
  let unregister = () => {};

  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const stop = () => {
    if (ended) return;
    ended = true;
    unsubscribe();
    unregister();
    clearTimeout(expiryTimer);
    poke();
    try {
      controller?.close();
    } catch { /* already closed or errored */ }
  };
  unregister = register(stop);
  try {
    if (encoded.length > MAX_WATCH_KEYS) {
      throw new TypeError(`Too many keys (max ${MAX_WATCH_KEYS})`);
    }
    // Deno KV bounds a watched key itself, not key + 0x00 as a get does: an
    // encoded key of 2049 bytes is accepted.
    for (const bytes of encoded) checkReadKey(bytes);
  } catch (error) {
    stop();
    throw error;
  }
  if (encoded.length === 0) {
    // Nothing to watch: like Deno KV, the stream ends at once.
    stop();
    return new ReadableStream({ start: (c) => c.close() });
  }
  unsubscribe = access.subscribe({
    committed(plan) {
      if (touches(plan, encoded)) {
        dirty = true;
        touched = true;
        poke();
      }
    },
    closed: () => stop(),
  });
  if (ended) unsubscribe(); // Stopped while subscribing.

  const read = async (): Promise<[KvRow | undefined, number | null][]> => {
    // The token first: a foreign commit after it is then seen by the next poll.
    token = await access.run((e) => e.changeToken());
    const now = Date.now();
    const rows = await access.run((e) => e.getMany(encoded, now));
    return rows.map((row) => [row, row?.[4] ?? null]);
  };

  return new ReadableStream<{ [K in keyof T]: KvEntryMaybe<T[K]> }>({
    start(c) {
      controller = c as ReadableStreamDefaultController<unknown>;
    },
    async pull(c) {
      for (;;) {
        if (ended) return;
        if (dirty) {
          dirty = false;
          const wasTouched = touched;
          touched = false;
          const rows = await read();
          if (ended) return;
          const versions = rows.map(([row]) => row?.[3] ?? null);
          const expiries = rows.map(([, exp]) => exp).filter((e): e is number => e !== null);
          clearTimeout(expiryTimer);
          if (expiries.length > 0) {
            const at = Math.min(...expiries);
            expiryTimer = setTimeout(() => {
              dirty = true;
              poke();
            }, Math.max(0, at - Date.now()) + 1);
          }
          const changed = last === undefined || versions.some((v, i) => v !== last![i]);
          if (changed || (raw && wasTouched)) {
            last = versions;
            c.enqueue(
              rows.map(([row], i) =>
                row === undefined
                  ? { key: keys[i]!, value: null, versionstamp: null }
                  : entryOf(row)
              ) as unknown as { [K in keyof T]: KvEntryMaybe<T[K]> },
            );
            return;
          }
        }
        // Wait for a local commit, an expiry, or a foreign commit.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, POLL_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
        if (ended || dirty) continue;
        try {
          const now = await access.run((e) => e.changeToken());
          if (token !== undefined && now !== token) dirty = true;
          token = now;
        } catch (error) {
          if (ended) return;
          throw error;
        }
      }
    },
    cancel() {
      stop();
    },
  }, { highWaterMark: 0 });
}
