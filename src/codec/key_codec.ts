/**
 * Deno KV's key encoding: each part becomes a type tag and an order-preserving
 * byte string, so comparing encoded keys as bytes (memcmp, SQLite's BLOB
 * order) gives Deno KV's key order: Uint8Array < string < bigint < number <
 * boolean. Pure functions, no I/O.
 *
 * @module
 */
import { formatVersionstamp } from "./versionstamp.ts";

/** One part of a key. A symbol is only valid as `commitVersionstamp()`. */
export type KvKeyPart = Uint8Array | string | number | bigint | boolean | symbol;
/** A key: a list of parts. */
export type KvKey = readonly KvKeyPart[];

const BYTES = 0x01;
const STRING = 0x02;
const NEG_INT_LARGE = 0x0b;
const INT_ZERO = 0x14;
const POS_INT_LARGE = 0x1d;
const DOUBLE = 0x21;
const FALSE = 0x26;
const TRUE = 0x27;

/** The message Deno KV uses for a key part of an unsupported type. */
export const INVALID_PART = "expected string, number, bigint, ArrayBufferView, boolean";

/** The symbol returned by `commitVersionstamp()`. */
export const COMMIT_VERSIONSTAMP: unique symbol = Symbol("KvCommitVersionstamp");

/** Raised for a bigint key part whose magnitude needs more than 255 bytes. */
export const BIGINT_TOO_LARGE = "BigUint requires more than 255 bytes to be represented";

// Keys are encoded straight into a shared pool and returned as views of it,
// as Node does for small `Buffer`s: allocating an `ArrayBuffer` costs more
// than encoding a short key. A key owns its bytes: no later call writes there.
const POOL_BYTES = 16 * 1024;
let buf = new Uint8Array(POOL_BYTES);
/** Where the key being encoded starts in `buf`. */
let start = 0;
/** Where the next byte goes. */
let len = 0;

function reserve(n: number): void {
  if (len + n <= buf.length) return;
  // Move the key so far to a fresh pool that fits it; the old one stays with
  // the keys already handed out.
  const used = len - start;
  const next = new Uint8Array(Math.max(POOL_BYTES, 2 * (used + n)));
  next.set(buf.subarray(start, len));
  buf = next;
  start = 0;
  len = used;
}

function pushEscaped(bytes: Uint8Array): void {
  reserve(bytes.length * 2 + 1);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    buf[len++] = b;
    if (b === 0) buf[len++] = 0xff;
  }
  buf[len++] = 0;
}

const encoder = new TextEncoder();

function pushString(s: string): void {
  reserve(s.length + 2);
  buf[len++] = STRING;
  const text = len;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c >= 0x80) {
      len = text;
      pushEscaped(encoder.encode(s));
      return;
    }
    buf[len++] = c;
  }
  buf[len++] = 0;
}

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);

function pushNumber(n: number): void {
  reserve(9);
  buf[len++] = DOUBLE;
  f64[0] = n;
  if (n !== n) {
    // Canonical NaN, keeping only the sign bit.
    const negative = (f64Bytes[7]! & 0x80) !== 0;
    f64Bytes.fill(0);
    f64Bytes[7] = negative ? 0xff : 0x7f;
    f64Bytes[6] = 0xf8;
  }
  const flipAll = (f64Bytes[7]! & 0x80) !== 0;
  for (let i = 7; i >= 0; i--) {
    const b = f64Bytes[i]!;
    buf[len++] = flipAll ? b ^ 0xff : (i === 7 ? b ^ 0x80 : b);
  }
}

function magnitudeBytes(m: bigint): Uint8Array {
  let hex = m.toString(16);
  if (hex.length % 2 === 1) hex = "0" + hex;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function pushBigInt(v: bigint, tooLarge: string): void {
  if (v === 0n) {
    reserve(1);
    buf[len++] = INT_ZERO;
    return;
  }
  const negative = v < 0n;
  const mag = magnitudeBytes(negative ? -v : v);
  const n = mag.length;
  if (n > 255) throw new TypeError(tooLarge);
  reserve(n + 2);
  if (n <= 8) {
    buf[len++] = negative ? INT_ZERO - n : INT_ZERO + n;
  } else {
    buf[len++] = negative ? NEG_INT_LARGE : POS_INT_LARGE;
    buf[len++] = negative ? n ^ 0xff : n;
  }
  for (let i = 0; i < n; i++) buf[len++] = negative ? mag[i]! ^ 0xff : mag[i]!;
}

/** How serde_v8 names a value of the wrong type in Deno KV's error messages. */
export function serdeTypeName(value: unknown): string {
  switch (typeof value) {
    case "string":
      return "string";
    case "number":
      return "Number";
    case "boolean":
      return "Boolean";
    case "bigint":
      return "bigint";
  }
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  return "unknown";
}

/**
 * Throws Deno KV's error for a key argument that is not an array.
 *
 * @throws {TypeError} Always, unless `key` is an array.
 */
export function assertKeyArray(key: unknown): asserts key is readonly unknown[] {
  if (Array.isArray(key)) return;
  if (key === null || key === undefined) throw new TypeError("Invalid range");
  throw new TypeError(
    `serde_v8 error: invalid type; expected: array, got: ${serdeTypeName(key)}`,
  );
}

/** Options for {@linkcode encodeKey}. */
export interface EncodeKeyOptions {
  /** Accept `COMMIT_VERSIONSTAMP` as the last part and leave it out of the bytes. */
  allowVersionstamp?: boolean;
  /** The message for a bigint part that is too large. */
  bigintTooLarge?: string;
}

/**
 * Encodes a key to its order-preserving bytes.
 *
 * @param key The key (an array of parts).
 * @param options Whether a trailing `commitVersionstamp()` symbol is allowed.
 * @returns The encoded key: bytes no other call writes to, often a view into
 *   a shared pool `ArrayBuffer` (read it through `byteOffset` and
 *   `byteLength`, never through `.buffer` alone).
 * @throws {TypeError} On a non-array key or a part of an unsupported type.
 */
export function encodeKey(key: unknown, options?: EncodeKeyOptions): Uint8Array {
  assertKeyArray(key);
  start = len;
  const last = key.length - 1;
  for (let i = 0; i <= last; i++) {
    // A hole in a sparse array reads as undefined and is rejected below.
    const part: unknown = key[i];
    switch (typeof part) {
      case "string":
        pushString(part);
        break;
      case "number":
        pushNumber(part);
        break;
      case "bigint":
        pushBigInt(part, options?.bigintTooLarge ?? BIGINT_TOO_LARGE);
        break;
      case "boolean":
        reserve(1);
        buf[len++] = part ? TRUE : FALSE;
        break;
      case "symbol":
        if (options?.allowVersionstamp && i === last && part === COMMIT_VERSIONSTAMP) break;
        throw new TypeError(INVALID_PART);
      default:
        if (ArrayBuffer.isView(part)) {
          reserve(1);
          buf[len++] = BYTES;
          pushEscaped(new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
          break;
        }
        throw new TypeError(INVALID_PART);
    }
  }
  return buf.subarray(start, len);
}

/** Whether `key` ends with the `commitVersionstamp()` symbol. */
export function endsWithVersionstamp(key: readonly unknown[]): boolean {
  return key.length > 0 && key[key.length - 1] === COMMIT_VERSIONSTAMP;
}

const decoder = new TextDecoder();

/** Reads an escaped byte string starting at `pos`; returns the bytes and the next position. */
function readEscaped(bytes: Uint8Array, pos: number): [Uint8Array, number] {
  let end = pos;
  let escapes = 0;
  for (;;) {
    if (end >= bytes.length) throw new TypeError("Invalid key encoding");
    if (bytes[end] === 0) {
      if (bytes[end + 1] === 0xff) {
        escapes++;
        end += 2;
        continue;
      }
      break;
    }
    end++;
  }
  if (escapes === 0) return [bytes.slice(pos, end), end + 1];
  const out = new Uint8Array(end - pos - escapes);
  let j = 0;
  for (let i = pos; i < end; i++) {
    out[j++] = bytes[i]!;
    if (bytes[i] === 0) i++;
  }
  return [out, end + 1];
}

function readString(bytes: Uint8Array, pos: number): [string, number] {
  // Fast path: short ASCII strings without NUL.
  let s = "";
  for (let i = pos; i < bytes.length && i - pos < 64; i++) {
    const b = bytes[i]!;
    if (b === 0) {
      if (bytes[i + 1] === 0xff) break; // An escaped NUL: take the slow path.
      return [s, i + 1];
    }
    if (b >= 0x80) break;
    s += String.fromCharCode(b);
  }
  const [raw, next] = readEscaped(bytes, pos);
  return [decoder.decode(raw), next];
}

/**
 * Decodes bytes produced by {@linkcode encodeKey}.
 *
 * @param bytes An encoded key.
 * @returns A new key array.
 * @throws {TypeError} When the bytes are not a valid key encoding.
 */
export function decodeKey(bytes: Uint8Array): KvKeyPart[] {
  const key: KvKeyPart[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const tag = bytes[pos++]!;
    if (tag === STRING) {
      const [s, next] = readString(bytes, pos);
      key.push(s);
      pos = next;
    } else if (tag === BYTES) {
      const [b, next] = readEscaped(bytes, pos);
      key.push(b);
      pos = next;
    } else if (tag === DOUBLE) {
      if (pos + 8 > bytes.length) throw new TypeError("Invalid key encoding");
      const flipAll = (bytes[pos]! & 0x80) === 0;
      for (let i = 0; i < 8; i++) {
        const b = bytes[pos + i]!;
        f64Bytes[7 - i] = flipAll ? b ^ 0xff : (i === 0 ? b ^ 0x80 : b);
      }
      key.push(f64[0]!);
      pos += 8;
    } else if (tag === FALSE || tag === TRUE) {
      key.push(tag === TRUE);
    } else if (tag >= NEG_INT_LARGE && tag <= POS_INT_LARGE) {
      let n: number;
      const negative = tag < INT_ZERO;
      if (tag === NEG_INT_LARGE) n = bytes[pos++]! ^ 0xff;
      else if (tag === POS_INT_LARGE) n = bytes[pos++]!;
      else n = negative ? INT_ZERO - tag : tag - INT_ZERO;
      if (pos + n > bytes.length) throw new TypeError("Invalid key encoding");
      let hex = "";
      for (let i = 0; i < n; i++) {
        const b = negative ? bytes[pos + i]! ^ 0xff : bytes[pos + i]!;
        hex += b.toString(16).padStart(2, "0");
      }
      pos += n;
      const mag = n === 0 ? 0n : BigInt("0x" + hex);
      key.push(negative ? -mag : mag);
    } else {
      throw new TypeError("Invalid key encoding");
    }
  }
  return key;
}

/** Compares two byte strings as memcmp does. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** `a` followed by the byte `b`. */
export function withByte(a: Uint8Array, b: number): Uint8Array {
  const out = new Uint8Array(a.length + 1);
  out.set(a);
  out[a.length] = b;
  return out;
}

/**
 * An encoded key followed by a commit's versionstamp as a string part: the
 * key a `set` with a trailing `commitVersionstamp()` writes, as Deno KV does.
 *
 * @param key The encoded key without the symbol.
 * @param version The commit version.
 * @returns A fresh encoded key.
 */
export function withVersionstamp(key: Uint8Array, version: number): Uint8Array {
  const stamp = formatVersionstamp(version);
  const out = new Uint8Array(key.length + 22);
  out.set(key);
  out[key.length] = STRING;
  for (let i = 0; i < 20; i++) out[key.length + 1 + i] = stamp.charCodeAt(i);
  out[key.length + 21] = 0x00;
  return out;
}
