/**
 * Value codec: turns a KV value into the bytes and encoding that Deno KV
 * stores, and back.
 *
 * - a `Uint8Array` (or Node `Buffer`) is stored as its visible bytes,
 *   {@linkcode ENCODING_BYTES};
 * - a top-level `KvU64` (ours or `Deno.KvU64`) as 8 little-endian bytes,
 *   {@linkcode ENCODING_LE64};
 * - anything else with the V8 structured-clone format, {@linkcode ENCODING_V8}.
 *
 * The V8 format is written and read by a hand-written fast path for plain
 * data (primitives, plain objects, dense arrays, Dates, ArrayBuffers and
 * views, shared and circular references) and by `node:v8` for everything
 * else, so the bytes always decode with `node:v8.deserialize`. Typed arrays
 * and DataViews are written as V8 itself writes them (a buffer, then a view),
 * not as Node host objects, so payload sizes equal Deno KV's.
 *
 * @module
 */

import { deserialize, Serializer } from "node:v8";
import { KvU64, u64Of } from "../kv_u64.ts";
import { NOT_HANDLED, readFast, writeFast } from "./_v8_wire.ts";

/** Encoding id of a V8 structured-clone payload, as in Deno KV's `v_encoding`. */
export const ENCODING_V8 = 1;
/** Encoding id of a top-level `KvU64`: 8 bytes, little-endian. */
export const ENCODING_LE64 = 2;
/** Encoding id of a `Uint8Array` value stored as raw bytes. */
export const ENCODING_BYTES = 3;

/** One of {@linkcode ENCODING_V8}, {@linkcode ENCODING_LE64}, {@linkcode ENCODING_BYTES}. */
export type ValueEncoding = 1 | 2 | 3;

/** A value as stored: its encoding id and payload. */
export interface EncodedValue {
  /** How {@linkcode EncodedValue.bytes} is to be read. */
  encoding: ValueEncoding;
  /**
   * The payload. Its length is what Deno KV's 65536-byte value limit applies
   * to. Small V8 payloads are views into a shared pool `ArrayBuffer` (like
   * pooled Node `Buffer`s): read them through `byteOffset` and `byteLength`,
   * never through `bytes.buffer` alone.
   */
  bytes: Uint8Array;
}

const typedArrayTag = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype),
  Symbol.toStringTag,
)!.get!;
/** A documented `v8.Serializer` method that the Node types leave out. */
interface HostObjectSwitch {
  _setTreatArrayBufferViewsAsHostObjects(flag: boolean): void;
}

const CLONE_SUFFIX = " could not be cloned.";
const WASM_MESSAGE = "Deno serializer: get_wasm_module_transfer_id not implemented";

/**
 * Encodes a value the way Deno KV stores it.
 *
 * @example Choosing the encoding
 * ```ts
 * import { encodeValue } from "./value_codec.ts";
 * import { KvU64 } from "../kv_u64.ts";
 * import { deepStrictEqual, equal } from "node:assert/strict";
 *
 * equal(encodeValue({ role: "user" }).encoding, 1);
 * equal(encodeValue(new KvU64(258n)).encoding, 2);
 * deepStrictEqual(encodeValue(new Uint8Array([1, 2, 3, 4]).subarray(1, 3)), {
 *   encoding: 3,
 *   bytes: new Uint8Array([2, 3]),
 * });
 * ```
 *
 * @param value Any value Deno KV accepts.
 * @returns The encoding and a payload that no other call writes to (never a
 * view of `value`).
 * @throws {TypeError} When the value cannot be cloned, e.g.
 * `"()=>{} could not be cloned."` or `"Wasm modules cannot be stored"`, or is
 * a `Uint8Array` over a shared or resizable buffer (Deno KV's serde_v8 errors).
 * @throws {Error} `"#<SharedArrayBuffer> could not be cloned."`, a plain
 * `Error` as in Deno KV.
 */
export function encodeValue(value: unknown): EncodedValue {
  if (typedArrayTag.call(value) === "Uint8Array") {
    const bytes = value as Uint8Array<ArrayBufferLike>;
    // Deno KV's own (serde_v8) messages for buffers it cannot slice.
    if (bytes.buffer instanceof SharedArrayBuffer) {
      throw new TypeError("serde_v8 error: invalid type; expected: buffer, got: Uint8Array");
    }
    if (bytes.buffer.resizable) {
      throw new TypeError("serde_v8 error: can't create slice from resizable ArrayBuffer");
    }
    return { encoding: ENCODING_BYTES, bytes: new Uint8Array(bytes) };
  }
  const u64 = u64Of(value);
  if (u64 !== undefined) {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, u64, true);
    return { encoding: ENCODING_LE64, bytes };
  }
  return { encoding: ENCODING_V8, bytes: serializeV8(value) };
}

/**
 * Decodes a stored value.
 *
 * @example Round trip
 * ```ts
 * import { decodeValue, encodeValue } from "./value_codec.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 *
 * const value = { at: new Date(0), n: 7n, tags: ["a", "b"] };
 * const { encoding, bytes } = encodeValue(value);
 * deepStrictEqual(decodeValue(encoding, bytes), value);
 * ```
 *
 * @param encoding The stored encoding id.
 * @param bytes The stored payload; not retained.
 * @returns The value: a plain `Uint8Array` copy for {@linkcode ENCODING_BYTES},
 * a `KvU64` for {@linkcode ENCODING_LE64}.
 * @throws {TypeError} When `encoding` is unknown or an LE64 payload is not 8 bytes.
 * @throws {Error} When V8 bytes are malformed (from `node:v8.deserialize`).
 */
export function decodeValue(encoding: number, bytes: Uint8Array): unknown {
  switch (encoding) {
    case ENCODING_V8:
      return deserializeV8(bytes);
    case ENCODING_LE64:
      if (bytes.length !== 8) {
        throw new TypeError(`LE64 value must be 8 bytes: received ${bytes.length}`);
      }
      return new KvU64(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    case ENCODING_BYTES:
      return new Uint8Array(bytes);
    default:
      throw new TypeError(`Unknown value encoding: ${encoding}`);
  }
}

/**
 * Serializes a value in V8's structured-clone format, header `FF 0F` as
 * `node:v8.serialize` writes it, quickly for plain data. Typed arrays and
 * DataViews are written as V8 (and so Deno KV) writes them, not as Node host
 * objects; `node:v8.deserialize` reads both.
 *
 * @example Readable by node:v8
 * ```ts
 * import { serializeV8 } from "./value_codec.ts";
 * import { deserialize } from "node:v8";
 * import { deepStrictEqual } from "node:assert/strict";
 *
 * const bytes = serializeV8({ role: "user", text: "hello world" });
 * deepStrictEqual(deserialize(bytes), { role: "user", text: "hello world" });
 * ```
 *
 * @param value Any structured-cloneable value. Getters are called once
 * (twice for values that need `node:v8`).
 * @returns The bytes; small results share a pool `ArrayBuffer` (see
 * {@linkcode EncodedValue.bytes}).
 * @throws {TypeError} When the value cannot be cloned.
 * @throws {Error} For a `SharedArrayBuffer`, as in Deno KV.
 */
export function serializeV8(value: unknown): Uint8Array {
  const fast = writeFast(value);
  if (fast !== undefined) return fast;
  const serializer = new Serializer();
  // Views as V8 (and so Deno KV) writes them: a SharedArrayBuffer-backed one
  // then fails as in Deno KV instead of being copied.
  (serializer as unknown as HostObjectSwitch)._setTreatArrayBufferViewsAsHostObjects(false);
  serializer.writeHeader();
  try {
    serializer.writeValue(value);
  } catch (err) {
    throw denoKvError(err);
  }
  const out = serializer.releaseBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Deserializes V8 structured-clone bytes, as written by {@linkcode serializeV8},
 * `node:v8.serialize` or Deno KV itself (header `FF 10`).
 *
 * @example Round trip
 * ```ts
 * import { deserializeV8, serializeV8 } from "./value_codec.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 *
 * const value = new Map([["k", new Set([1, 2])]]);
 * deepStrictEqual(deserializeV8(serializeV8(value)), value);
 * ```
 *
 * @param bytes The payload; not retained.
 * @returns The value.
 * @throws {Error} When the bytes are malformed (from `node:v8.deserialize`).
 */
export function deserializeV8(bytes: Uint8Array): unknown {
  const value = readFast(bytes);
  return value === NOT_HANDLED ? deserialize(bytes) : value;
}

/** Maps `node:v8`'s plain `Error`s to the classes and messages Deno KV uses. */
function denoKvError(err: unknown): unknown {
  if (!(err instanceof Error) || Object.getPrototypeOf(err) !== Error.prototype) return err;
  const { message } = err;
  if (message.endsWith(CLONE_SUFFIX) && !message.startsWith("#<SharedArrayBuffer>")) {
    return new TypeError(message);
  }
  if (message === WASM_MESSAGE) return new TypeError("Wasm modules cannot be stored");
  return err;
}
