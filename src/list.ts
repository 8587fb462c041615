/**
 * `list()`: selectors, byte ranges, batches and stateless cursors, as Deno KV
 * computes them (spec §2.8).
 *
 * @module
 */
import {
  BIGINT_TOO_LARGE,
  compareBytes,
  decodeKey,
  encodeKey,
  withByte,
} from "./codec/key_codec.ts";
import { decodeValue } from "./codec/value_codec.ts";
import { formatVersionstamp } from "./codec/versionstamp.ts";
import type { KvAccess, KvRow } from "./engine.ts";
import { MAX_BATCH_SIZE, MAX_READ_KEY_BYTES } from "./limits.ts";
import type { KvEntry, KvKey, KvListSelector } from "./types.ts";

interface Selector {
  prefix?: readonly unknown[];
  start?: readonly unknown[];
  end?: readonly unknown[];
}

/** Validates `consistency` as Deno KV does. */
export function validateConsistency(consistency: unknown): void {
  if (consistency === undefined || consistency === "strong" || consistency === "eventual") return;
  throw new TypeError(
    `unknown variant \`${String(consistency)}\`, expected \`strong\` or \`eventual\``,
  );
}

/**
 * Encodes the keys of a read in Deno KV's validation order: part types, then
 * `consistency`, then bigint ranges. `undefined` keys stay `undefined`.
 *
 * @throws {TypeError} The first error in that order.
 */
export function encodeReadKeys<K extends readonly unknown[] | undefined>(
  keys: readonly K[],
  consistency: unknown,
  afterConsistency?: () => void,
): (Uint8Array | (K extends undefined ? undefined : never))[] {
  let outOfRange: unknown;
  const encoded = keys.map((key) => {
    if (key === undefined) return undefined;
    try {
      return encodeKey(key);
    } catch (error) {
      if (!(error instanceof TypeError) || error.message !== BIGINT_TOO_LARGE) throw error;
      outOfRange ??= error;
      return new Uint8Array(0);
    }
  });
  validateConsistency(consistency);
  afterConsistency?.();
  if (outOfRange !== undefined) throw outOfRange;
  return encoded as (Uint8Array | (K extends undefined ? undefined : never))[];
}

/**
 * Encodes the key of a point read (`get`), validating in Deno KV's order: part
 * types, `consistency`, bigint ranges, then the size of the read.
 *
 * @throws {TypeError} The first error in that order.
 */
export function encodeReadKey(key: unknown, consistency: unknown): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = encodeKey(key);
  } catch (error) {
    if (error instanceof TypeError && error.message === BIGINT_TOO_LARGE) {
      validateConsistency(consistency);
    }
    throw error;
  }
  validateConsistency(consistency);
  // A get reads `[key, key + 0x00)`.
  checkReadKey(bytes, 1);
  return bytes;
}

/**
 * Throws Deno KV's read-size error when a range bound is too long.
 *
 * @param extra Bytes the read adds to `bytes` (a point read adds one).
 */
export function checkReadKey(bytes: Uint8Array, extra = 0): void {
  if (bytes.length + extra > MAX_READ_KEY_BYTES) {
    throw new TypeError(`Key too large for read (max ${MAX_READ_KEY_BYTES} bytes)`);
  }
}

function copySelector(selector: KvListSelector): Selector {
  const s = selector as Selector;
  const pick = (name: "prefix" | "start" | "end") =>
    Object.hasOwn(s, name) && s[name] !== undefined
      ? Object.freeze(Array.prototype.slice.call(s[name]))
      : undefined;
  const prefix = pick("prefix");
  const start = pick("start");
  const end = pick("end");
  if (prefix) {
    if (start && end) {
      throw new TypeError(
        "Selector can not specify both 'start' and 'end' key when specifying 'prefix'",
      );
    }
    return Object.freeze(start ? { prefix, start } : end ? { prefix, end } : { prefix });
  }
  if (start && end) return Object.freeze({ start, end });
  throw new TypeError("Selector must specify either 'prefix' or both 'start' and 'end' key");
}

/** The encoded selector: its default range and its cursor prefix. */
interface RawSelector {
  prefix: Uint8Array | undefined;
  start: Uint8Array | undefined;
  end: Uint8Array | undefined;
  rangeStart: Uint8Array;
  rangeEnd: Uint8Array;
  common: Uint8Array;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

type SelectorKeys = (Uint8Array | undefined)[];

function rawSelector([prefix, start, end]: SelectorKeys): RawSelector {
  if (prefix) {
    if (start && (!startsWith(start, prefix) || start.length === prefix.length)) {
      throw new TypeError("Start key is not in the keyspace defined by prefix");
    }
    if (end && (!startsWith(end, prefix) || end.length === prefix.length)) {
      throw new TypeError("End key is not in the keyspace defined by prefix");
    }
    return {
      prefix,
      start,
      end,
      rangeStart: start ?? withByte(prefix, 0x00),
      rangeEnd: end ?? withByte(prefix, 0xff),
      common: prefix,
    };
  }
  if (compareBytes(start!, end!) > 0) throw new TypeError("Start key is greater than end key");
  let n = 0;
  while (n < start!.length && n < end!.length && start![n] === end![n]) n++;
  return {
    prefix,
    start,
    end,
    rangeStart: start!,
    rangeEnd: end!,
    common: start!.slice(0, n),
  };
}

const CURSOR = /^[A-Za-z0-9_-]*={0,2}$/;

function encodeCursor(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_");
}

function decodeCursor(cursor: string): Uint8Array {
  if (cursor.length % 4 !== 0 || !CURSOR.test(cursor)) throw new TypeError("invalid cursor");
  let raw: string;
  try {
    raw = atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
  } catch {
    throw new TypeError("invalid cursor");
  }
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  // Strict: reject non-canonical encodings (stray trailing bits).
  if (encodeCursor(bytes) !== cursor) throw new TypeError("invalid cursor");
  return bytes;
}

/** The byte range to read for a selector and an optional cursor. */
function rangeOf(sel: RawSelector, cursor: string | undefined, reverse: boolean) {
  // "" is a real position here (the key equal to the common prefix); only a
  // caller's empty cursor option means "from the start", and never gets here.
  if (cursor === undefined) return [sel.rangeStart, sel.rangeEnd] as const;
  const position = decodeCursor(cursor);
  const key = new Uint8Array(sel.common.length + position.length);
  key.set(sel.common);
  key.set(position, sel.common.length);
  const first = reverse ? sel.rangeStart : withByte(key, 0x00);
  const last = reverse ? key : sel.rangeEnd;
  if (sel.start ? compareBytes(first, sel.start) < 0 : !startsWith(first, sel.prefix!)) {
    throw new TypeError("cursor out of bounds");
  }
  if (sel.end ? compareBytes(last, sel.end) > 0 : !startsWith(last, sel.prefix!)) {
    throw new TypeError("cursor out of bounds");
  }
  return [first, last] as const;
}

/** Builds the entry for a stored row. */
export function entryOf<T>(row: KvRow): KvEntry<T> {
  return {
    key: decodeKey(row[0]) as KvKey,
    value: decodeValue(row[2], row[1]) as T,
    versionstamp: formatVersionstamp(row[3]),
  };
}

/** @internal Options of a list iterator, already validated by `SessionKv.list()`. */
export interface ListIteratorInit {
  selector: KvListSelector;
  limit: number | undefined;
  cursor: string | undefined;
  reverse: boolean;
  consistency: unknown;
  batchSize: number;
  explicitBatchSize: boolean;
  access: KvAccess;
}

/**
 * Iterates the entries a `list()` selects, fetching them in batches. Each
 * batch is its own snapshot; the `cursor` after an entry resumes after it.
 *
 * @example Resume a listing from its cursor
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { deepEqual } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await using store = new SessionStore({ root });
 * using kv = await store.openKv("bot", "session");
 * for (let i = 0; i < 5; i++) await kv.set(["items", i], i);
 *
 * const page = kv.list<number>({ prefix: ["items"] }, { limit: 2 });
 * await Array.fromAsync(page); // the first two
 * const rest = kv.list<number>({ prefix: ["items"] }, { cursor: page.cursor });
 * deepEqual((await Array.fromAsync(rest)).map((e) => e.value), [2, 3, 4]);
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class KvListIterator<T> implements AsyncIterableIterator<KvEntry<T>> {
  #init: ListIteratorInit;
  #selector: Selector;
  #raw: RawSelector | undefined;
  #entries: KvRow[] = [];
  #lastBatch = false;
  #done = false;
  #count = 0;
  #cursor: (() => string) | null;

  /** @internal Use `SessionKv.list()`. */
  constructor(init: ListIteratorInit) {
    this.#init = init;
    this.#selector = copySelector(init.selector);
    const cursor = init.cursor;
    this.#cursor = cursor ? () => cursor : null;
  }

  /**
   * The position after the last entry returned: pass it as `cursor` to resume.
   * `""` once the selection is exhausted.
   *
   * @throws {Error} Before the first `next()` unless a cursor was given.
   */
  get cursor(): string {
    if (this.#cursor === null) throw new Error("Cannot get cursor before first iteration");
    return this.#cursor();
  }

  /** Returns the next entry. */
  async next(): Promise<IteratorResult<KvEntry<T>, undefined>> {
    const init = this.#init;
    if (this.#done || (init.limit !== undefined && this.#count >= init.limit)) {
      return { done: true, value: undefined };
    }
    if (this.#entries.length === 0 && !this.#lastBatch) {
      const batch = await this.#pull();
      batch.reverse();
      this.#entries = batch;
      if (batch.length < init.batchSize) this.#lastBatch = true;
    }
    const row = this.#entries.pop();
    if (row === undefined) {
      this.#done = true;
      this.#cursor = () => "";
      return { done: true, value: undefined };
    }
    const common = this.#raw!.common;
    this.#cursor = () => encodeCursor(row[0].subarray(common.length));
    this.#count++;
    return { done: false, value: entryOf<T>(row) };
  }

  async #pull(): Promise<KvRow[]> {
    // Deno KV's order: key types, consistency, selector, cursor, bound
    // sizes, then the batch size.
    const init = this.#init;
    if (this.#raw === undefined) {
      const { prefix, start, end } = this.#selector;
      this.#raw = rawSelector(encodeReadKeys([prefix, start, end], init.consistency));
    } else {
      validateConsistency(init.consistency);
    }
    const cursor = this.#cursor?.();
    const [start, end] = rangeOf(this.#raw, cursor, init.reverse);
    checkReadKey(start);
    checkReadKey(end);
    if (init.explicitBatchSize && init.batchSize > MAX_BATCH_SIZE) {
      throw new TypeError(`Too many entries (max ${MAX_BATCH_SIZE})`);
    }
    if (compareBytes(start, end) >= 0) return [];
    const range = { start, end, limit: init.batchSize, reverse: init.reverse };
    const now = Date.now();
    return await init.access.run((engine) => engine.list(range, now));
  }

  /**
   * The iterator itself, so it works with `for await`.
   *
   * @returns This iterator.
   */
  [Symbol.asyncIterator](): this {
    return this;
  }
}
