/**
 * Private: a fast writer and reader for the common subset of the V8
 * ValueSerializer wire format (version 15, as `node:v8.serialize` writes it).
 *
 * Covered: undefined, null, booleans, numbers, bigints, strings, plain objects,
 * dense arrays, Dates, ArrayBuffers, typed arrays and DataViews, and object
 * back-references. Views are written as V8 itself (and so Deno KV) writes
 * them, not as `node:v8`'s host objects, which `node:v8.deserialize` reads
 * too; this keeps sizes equal to Deno KV's. Anything else makes
 * {@linkcode writeFast} return `undefined` and {@linkcode readFast} return
 * {@linkcode NOT_HANDLED}, and the caller falls back to `node:v8` for the
 * whole value. No error is thrown for unclonable values here, so `node:v8`
 * reports them with its exact message.
 *
 * @module
 */

import { isArrayBuffer, isDate, isProxy } from "node:util/types";

/** Returned by {@linkcode readFast} when the bytes need `node:v8.deserialize`. */
export const NOT_HANDLED: unique symbol = Symbol("NOT_HANDLED");

// Tags of the V8 ValueSerializer format (v8/src/objects/value-serializer.cc).
const VERSION = 0xff; // followed by varint version
const LATEST_VERSION = 15; // what node:v8.serialize writes in Deno 2.9.6
const PADDING = 0x00;
const UNDEFINED = 0x5f; // _
const NULL = 0x30; // 0
const TRUE = 0x54; // T
const FALSE = 0x46; // F
const INT32 = 0x49; // I  zigzag varint
const DOUBLE = 0x4e; // N  float64 LE
const BIGINT = 0x5a; // Z  varint bitfield, 64-bit LE digits
const ONE_BYTE_STRING = 0x22; // "  varint length, Latin-1 bytes
const TWO_BYTE_STRING = 0x63; // c  varint byte length, UTF-16LE
const UTF8_STRING = 0x53; // S  varint byte length, UTF-8 (read only)
const OBJECT_REFERENCE = 0x5e; // ^  varint id
const BEGIN_OBJECT = 0x6f; // o
const END_OBJECT = 0x7b; // {  varint property count
const BEGIN_DENSE_ARRAY = 0x41; // A  varint length
const END_DENSE_ARRAY = 0x24; // $  varint property count, varint length
const BEGIN_SPARSE_ARRAY = 0x61; // a  varint length
const END_SPARSE_ARRAY = 0x40; // @  varint property count, varint length
const DATE = 0x44; // D  float64 LE
const ARRAY_BUFFER = 0x42; // B  varint byte length, raw bytes
const ARRAY_BUFFER_VIEW = 0x56; // V  sub-tag, varint offset, varint length, varint flags

/** Sub-tags of `ARRAY_BUFFER_VIEW`; a view follows the buffer it lives in. */
type ViewConstructor = new (buffer: ArrayBuffer, offset: number, length: number) => ArrayBufferView;
const VIEW_SUBTAGS: [ViewConstructor, number][] = [
  [Int8Array, 0x62], // b
  [Uint8Array, 0x42], // B
  [Uint8ClampedArray, 0x43], // C
  [Int16Array, 0x77], // w
  [Uint16Array, 0x57], // W
  [Int32Array, 0x64], // d
  [Uint32Array, 0x44], // D
  [Float16Array, 0x68], // h
  [Float32Array, 0x66], // f
  [Float64Array, 0x46], // F
  [BigInt64Array, 0x71], // q
  [BigUint64Array, 0x51], // Q
  [DataView, 0x3f], // ?
];
const subtagOf = new Map<unknown, number>(VIEW_SUBTAGS.map(([C, tag]) => [C.prototype, tag]));
const viewOf = new Map<number, ViewConstructor>(VIEW_SUBTAGS.map(([C, tag]) => [tag, C]));

const MAX_ARRAY_INDEX = 0xffff_fffe;
const MAX_INT32 = 0x7fff_ffff;
const MAX_SCANNED_IDS = 64;

/** Unwinds the fast writer or reader; never escapes this module. */
const BAIL: unique symbol = Symbol("BAIL");
const getTime = Date.prototype.getTime;
const objectToString = Object.prototype.toString;
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();
/** From about these lengths on, native UTF-8 calls beat JavaScript loops. */
const NATIVE_ENCODE_LENGTH = 96;
const NATIVE_DECODE_LENGTH = 56;
const codes: number[] = [];
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
// Scratch for float64 and 64-bit words; a DataView per call costs more.
const scratch = new Uint8Array(8);
const f64 = new Float64Array(scratch.buffer);
const u64 = new BigUint64Array(scratch.buffer);

/** Small results are views into a shared pool, as with Node's `Buffer`: one
 * `ArrayBuffer` allocation costs more than serializing a small object. */
const POOL_BYTES = 32 * 1024;
const POOL_MIN_FREE = 4 * 1024;
let pool = new Uint8Array(POOL_BYTES);
let poolUsed = 0;

class Writer {
  buf: Uint8Array = pool;
  start = 0;
  pos = 0;
  /** Objects in order of first visit: V8's object ids. */
  seen: object[] = [];
  /** Index of `seen`, built once it is too long to scan (a Map costs ~70 ns). */
  ids: Map<object, number> | undefined;

  /** Grows into a private buffer when `n` more bytes do not fit. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const used = this.pos - this.start;
    const next = new Uint8Array(Math.max(2 * used, used + n, 256));
    next.set(this.buf.subarray(this.start, this.pos));
    this.buf = next;
    this.start = 0;
    this.pos = used;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /** Unsigned varint; callers ensure 10 spare bytes. Works up to 2^53. */
  varint(v: number): void {
    const { buf } = this;
    while (v >= 0x80) {
      buf[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 0x80);
    }
    buf[this.pos++] = v;
  }

  float64(v: number): void {
    f64[0] = v;
    this.copyScratch();
  }

  /** Copies the 8 scratch bytes, little-endian, to `pos`. */
  copyScratch(): void {
    const { buf } = this;
    for (let i = 0; i < 8; i++) buf[this.pos++] = scratch[LITTLE_ENDIAN ? i : 7 - i]!;
  }

  value(v: unknown): void {
    switch (typeof v) {
      case "string":
        return this.string(v);
      case "number":
        return this.number(v);
      case "boolean":
        return this.byte(v ? TRUE : FALSE);
      case "undefined":
        return this.byte(UNDEFINED);
      case "bigint":
        return this.bigint(v);
      case "object":
        return v === null ? this.byte(NULL) : this.object(v);
      default: // function, symbol: let node:v8 throw its exact error
        throw BAIL;
    }
  }

  number(n: number): void {
    this.ensure(10);
    if ((n | 0) === n && (n !== 0 || 1 / n > 0)) {
      this.buf[this.pos++] = INT32;
      this.varint(((n << 1) ^ (n >> 31)) >>> 0);
    } else {
      this.buf[this.pos++] = DOUBLE;
      this.float64(n);
    }
  }

  bigint(n: bigint): void {
    const sign = n < 0n ? 1 : 0;
    let magnitude = sign ? -n : n;
    const words = magnitude === 0n ? 0 : Math.ceil(magnitude.toString(16).length / 16);
    this.ensure(11 + words * 8);
    this.buf[this.pos++] = BIGINT;
    this.varint(words * 16 + sign); // bitfield: byte length << 1 | sign
    for (let i = 0; i < words; i++) {
      u64[0] = BigInt.asUintN(64, magnitude);
      this.copyScratch();
      magnitude >>= 64n;
    }
  }

  string(s: string): void {
    const len = s.length;
    this.ensure(2 * len + 12);
    const { buf } = this;
    const start = this.pos;
    buf[this.pos++] = ONE_BYTE_STRING;
    this.varint(len);
    let p = this.pos;
    let i = 0;
    if (len >= NATIVE_ENCODE_LENGTH) {
      // Natively copies the ASCII prefix: the chars that took one byte each.
      const { read, written } = encoder.encodeInto(s, buf.subarray(p, p + len));
      if (read === written) {
        i = read;
        p += read;
      }
    }
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) return this.twoByteString(s, start);
      buf[p++] = c;
    }
    this.pos = p;
  }

  twoByteString(s: string, start: number): void {
    const { buf } = this;
    const byteLength = s.length * 2;
    let p = start;
    // V8 pads so that the UTF-16 payload starts at an even offset.
    if ((p - this.start + 1 + varintSize(byteLength)) & 1) buf[p++] = PADDING;
    buf[p++] = TWO_BYTE_STRING;
    this.pos = p;
    this.varint(byteLength);
    p = this.pos;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      buf[p++] = c & 0xff;
      buf[p++] = c >> 8;
    }
    this.pos = p;
  }

  object(o: object): void {
    const id = this.idOf(o);
    this.ensure(10);
    if (id >= 0) {
      this.buf[this.pos++] = OBJECT_REFERENCE;
      return this.varint(id);
    }
    if (isProxy(o)) throw BAIL;
    if (ArrayBuffer.isView(o)) return this.view(o); // its buffer gets the first id
    this.remember(o);
    if (Array.isArray(o)) return this.array(o);
    const proto: unknown = Object.getPrototypeOf(o);
    // "[object Object]" also rules out arguments objects, module namespaces and
    // Errors, Dates, RegExps and wrappers whose prototype was swapped.
    if (
      (proto === Object.prototype || proto === null) && objectToString.call(o) === "[object Object]"
    ) {
      return this.plainObject(o as Record<string, unknown>);
    }
    if (proto === Date.prototype && isDate(o)) {
      this.buf[this.pos++] = DATE;
      return this.float64(getTime.call(o));
    }
    if (typeof DOMException === "function" && o instanceof DOMException) {
      // Deno keeps a DOMException's message in a private field, which V8's
      // error serialization does not see (it would store an empty message):
      // store it as an Error with its message and stack.
      this.buf[this.pos++] = 0x72; // 'r': error
      this.varint(0x6d); // 'm': message
      this.string(o.message);
      if (typeof o.stack === "string") {
        this.ensure(1);
        this.varint(0x73); // 's': stack
        this.string(o.stack);
      }
      this.ensure(1);
      return this.varint(0x2e); // '.': end
    }
    // Shared, resizable and detached buffers are left to node:v8.
    if (proto === ArrayBuffer.prototype && isArrayBuffer(o) && !o.resizable && !o.detached) {
      const n = o.byteLength;
      this.ensure(6 + n);
      this.buf[this.pos++] = ARRAY_BUFFER;
      this.varint(n);
      this.buf.set(new Uint8Array(o), this.pos);
      this.pos += n;
      return;
    }
    throw BAIL;
  }

  /** A typed array or DataView: its whole buffer, then the view over it. */
  view(v: ArrayBufferView): void {
    const subtag = subtagOf.get(Object.getPrototypeOf(v));
    if (subtag === undefined) throw BAIL;
    this.object(v.buffer);
    this.remember(v);
    this.ensure(18);
    this.buf[this.pos++] = ARRAY_BUFFER_VIEW;
    this.buf[this.pos++] = subtag;
    this.varint(v.byteOffset);
    this.varint(v.byteLength);
    this.varint(0); // flags: not length-tracking, not backed by a resizable buffer
  }

  /** The id of an object already written, or -1. */
  idOf(o: object): number {
    return this.ids === undefined ? this.seen.indexOf(o) : this.ids.get(o) ?? -1;
  }

  /** Gives `o` the next id. */
  remember(o: object): void {
    const { seen } = this;
    if (this.ids === undefined && seen.length === MAX_SCANNED_IDS) {
      this.ids = new Map();
      for (let i = 0; i < seen.length; i++) this.ids.set(seen[i]!, i);
    }
    this.ids?.set(o, seen.length);
    seen.push(o);
  }

  plainObject(o: Record<string, unknown>): void {
    this.buf[this.pos++] = BEGIN_OBJECT;
    const keys = Object.keys(o);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      const c = key.charCodeAt(0);
      // V8 writes array-index keys ("0" … "4294967294") as numbers.
      const index = c >= 0x30 && c <= 0x39 ? arrayIndex(key) : -1;
      if (index < 0) {
        this.string(key);
      } else if (index <= MAX_INT32) {
        this.number(index);
      } else {
        this.ensure(9);
        this.buf[this.pos++] = DOUBLE;
        this.float64(index);
      }
      this.value(o[key]);
    }
    this.ensure(10);
    this.buf[this.pos++] = END_OBJECT;
    this.varint(keys.length);
  }

  array(a: unknown[]): void {
    const len = a.length;
    // Subclasses, holes and extra properties are left to node:v8.
    if (Object.getPrototypeOf(a) !== Array.prototype || Object.keys(a).length !== len) throw BAIL;
    this.buf[this.pos++] = BEGIN_DENSE_ARRAY;
    this.varint(len);
    for (let i = 0; i < len; i++) {
      const v = a[i];
      if (v === undefined && !(i in a)) throw BAIL;
      this.value(v);
    }
    this.ensure(20);
    this.buf[this.pos++] = END_DENSE_ARRAY;
    this.varint(0);
    this.varint(len);
  }
}

function isStackOverflow(err: unknown): boolean {
  return err instanceof RangeError && err.message === "Maximum call stack size exceeded";
}

function varintSize(v: number): number {
  let n = 1;
  for (; v >= 0x80; n++) v = Math.floor(v / 0x80);
  return n;
}

/** The array index a canonical key names, or -1. */
function arrayIndex(key: string): number {
  const n = Number(key);
  return n >>> 0 === n && n <= MAX_ARRAY_INDEX && String(n) === key ? n : -1;
}

let idle: Writer | undefined = new Writer();

/**
 * Serializes `value` when every part of it is on the fast path.
 *
 * @returns The bytes (header `FF 0F`), possibly a view into a shared pool
 * `ArrayBuffer`, or `undefined` to use `node:v8`.
 */
export function writeFast(value: unknown): Uint8Array | undefined {
  const w = idle;
  if (w === undefined) return writeWith(new Writer(), value, false); // re-entered from a getter
  idle = undefined;
  try {
    if (POOL_BYTES - poolUsed < POOL_MIN_FREE) {
      pool = new Uint8Array(POOL_BYTES);
      poolUsed = 0;
    }
    return writeWith(w, value, true);
  } finally {
    idle = w;
  }
}

function writeWith(w: Writer, value: unknown, pooled: boolean): Uint8Array | undefined {
  w.buf = pooled ? pool : new Uint8Array(256);
  w.start = w.pos = pooled ? poolUsed : 0;
  try {
    w.ensure(2);
    w.buf[w.pos++] = VERSION;
    w.buf[w.pos++] = LATEST_VERSION;
    w.value(value);
    if (w.buf === pool) poolUsed = (w.pos + 7) & ~7; // keep results 8-byte aligned
    return w.buf.subarray(w.start, w.pos);
  } catch (err) {
    if (err === BAIL || isStackOverflow(err)) return undefined; // node:v8 goes deeper
    throw err;
  } finally {
    w.seen.length = 0;
    w.ids = undefined;
    w.buf = pool;
  }
}

class Reader {
  pos = 2;
  ids: unknown[] = [];
  constructor(readonly bytes: Uint8Array) {}

  /** Loads 8 little-endian bytes into the scratch words. */
  scratch8(): void {
    const { bytes } = this;
    const start = this.take(8);
    for (let i = 0; i < 8; i++) scratch[LITTLE_ENDIAN ? i : 7 - i] = bytes[start + i]!;
  }

  float64(): number {
    this.scratch8();
    return f64[0]!;
  }

  /** Reserves `n` bytes and returns where they start. */
  take(n: number): number {
    const start = this.pos;
    if (start + n > this.bytes.length) throw BAIL;
    this.pos = start + n;
    return start;
  }

  tag(): number {
    let tag;
    do tag = this.bytes[this.take(1)]!; while (tag === PADDING);
    return tag;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    let b;
    do {
      b = this.bytes[this.take(1)]!;
      result += (b & 0x7f) * scale;
      scale *= 0x80;
    } while (b & 0x80);
    return result;
  }

  value(tag = this.tag()): unknown {
    switch (tag) {
      case UNDEFINED:
        return undefined;
      case NULL:
        return null;
      case TRUE:
        return true;
      case FALSE:
        return false;
      case INT32: {
        const v = this.varint();
        return (v >>> 1) ^ -(v & 1);
      }
      case DOUBLE:
        return this.float64();
      case BIGINT:
        return this.bigint();
      case ONE_BYTE_STRING:
      case TWO_BYTE_STRING:
      case UTF8_STRING:
        return this.string(tag);
      case OBJECT_REFERENCE: {
        const id = this.varint();
        if (id >= this.ids.length) throw BAIL;
        const o = this.ids[id];
        return o instanceof ArrayBuffer ? this.viewAfter(o) : o;
      }
      case BEGIN_OBJECT: {
        const o = {};
        this.ids.push(o);
        this.endWith(this.properties(o, END_OBJECT));
        return o;
      }
      case BEGIN_DENSE_ARRAY: {
        const len = this.varint();
        const a: unknown[] = [];
        this.ids.push(a);
        for (let i = 0; i < len; i++) a.push(this.value()); // a hole tag bails
        this.endWith(this.properties(a, END_DENSE_ARRAY), len);
        return a;
      }
      case BEGIN_SPARSE_ARRAY: {
        const len = this.varint();
        if (len > MAX_ARRAY_INDEX + 1) throw BAIL;
        const a: unknown[] = new Array(len);
        this.ids.push(a);
        this.endWith(this.properties(a, END_SPARSE_ARRAY), len);
        return a;
      }
      case DATE: {
        const d = new Date(this.float64());
        this.ids.push(d);
        return d;
      }
      case ARRAY_BUFFER: {
        const n = this.varint();
        const start = this.take(n);
        const buffer = this.bytes.slice(start, start + n).buffer;
        this.ids.push(buffer);
        return this.viewAfter(buffer);
      }
      default: // everything else is left to node:v8
        throw BAIL;
    }
  }

  /** Reads the view that may follow a buffer, as V8 does; else the buffer. */
  viewAfter(buffer: ArrayBuffer): unknown {
    let p = this.pos;
    while (this.bytes[p] === PADDING) p++;
    if (this.bytes[p] !== ARRAY_BUFFER_VIEW) return buffer;
    this.pos = p + 1;
    const View = viewOf.get(this.varint());
    const offset = this.varint();
    const length = this.varint();
    const flags = this.varint();
    const size = View === undefined || View === DataView
      ? 1
      : (View as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
    if (
      View === undefined || flags !== 0 || offset + length > buffer.byteLength ||
      offset % size !== 0 || length % size !== 0
    ) {
      throw BAIL;
    }
    const view = new View(buffer, offset, length / size);
    this.ids.push(view);
    return view;
  }

  /** Reads key/value pairs up to the `end` tag; returns how many. */
  properties(o: object, end: number): number {
    const target = o as Record<string, unknown>;
    for (let count = 0;; count++) {
      const tag = this.tag();
      if (tag === end) return count;
      const key = this.value(tag);
      if (typeof key !== "string" && typeof key !== "number") throw BAIL;
      const value = this.value();
      if (key === "__proto__") {
        Object.defineProperty(target, key, {
          value,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      } else {
        target[key] = value;
      }
    }
  }

  /** Checks the counts that follow an end tag, as V8 does. */
  endWith(count: number, length?: number): void {
    if (this.varint() !== count) throw BAIL;
    if (length !== undefined && this.varint() !== length) throw BAIL;
  }

  string(tag: number): string {
    const n = this.varint();
    const start = this.take(n);
    const { bytes } = this;
    if (tag === ONE_BYTE_STRING) {
      if (n <= MAX_CACHED_LENGTH) return cachedString(bytes, start, n);
      if (n >= NATIVE_DECODE_LENGTH) {
        // Valid UTF-8 with one char per byte and no U+FFFD is ASCII, so Latin-1.
        const s = utf8.decode(bytes.subarray(start, start + n));
        if (s.length === n && !s.includes("\uFFFD")) return s;
      }
      return fromCharCodes(bytes, start, n, 1);
    }
    if (tag === UTF8_STRING) return utf8.decode(bytes.subarray(start, start + n));
    if (n & 1) throw BAIL;
    // Lone surrogates must survive, so no TextDecoder("utf-16le").
    return fromCharCodes(bytes, start, n / 2, 2);
  }

  bigint(): bigint {
    const bitfield = this.varint();
    const byteLength = Math.floor(bitfield / 2);
    if (byteLength % 8 !== 0) throw BAIL;
    const bits = BigInt(byteLength * 8);
    let v = 0n;
    for (let shift = 0n; shift < bits; shift += 64n) {
      this.scratch8();
      v |= u64[0]! << shift;
    }
    return bitfield % 2 ? -v : v;
  }
}

// Short Latin-1 strings (keys, enum-like values) repeat across values: reusing
// one string object skips building it and re-internalizing it as a key.
const MAX_CACHED_LENGTH = 24;
const CACHE_SLOTS = 4096;
const stringCache: (string | undefined)[] = new Array(CACHE_SLOTS).fill(undefined);

function cachedString(bytes: Uint8Array, start: number, n: number): string {
  const end = start + n;
  // A cheap hash: collisions only cost a rebuild, the comparison below decides.
  const hash = n === 0
    ? 0
    : n * 0x9e3 + bytes[start]! * 0x3b + bytes[start + (n >> 1)]! * 7 + bytes[end - 1]!;
  const hit = stringCache[hash & (CACHE_SLOTS - 1)];
  if (hit !== undefined && hit.length === n) {
    let i = 0;
    while (i < n && hit.charCodeAt(i) === bytes[start + i]) i++;
    if (i === n) return hit;
  }
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]!);
  stringCache[hash & (CACHE_SLOTS - 1)] = s;
  return s;
}

/** Builds a string from `n` Latin-1 (`width` 1) or UTF-16LE (`width` 2) units. */
function fromCharCodes(bytes: Uint8Array, start: number, n: number, width: 1 | 2): string {
  let s = "";
  for (let done = 0; done < n; done += codes.length) {
    codes.length = Math.min(n - done, 8192);
    for (let i = 0, p = start + done * width; i < codes.length; i++, p += width) {
      codes[i] = width === 1 ? bytes[p]! : bytes[p]! | (bytes[p + 1]! << 8);
    }
    s += String.fromCharCode.apply(null, codes);
  }
  return s;
}

/**
 * Deserializes V8 bytes when every tag in them is on the fast path.
 *
 * @returns The value, or {@linkcode NOT_HANDLED} to use `node:v8`.
 */
export function readFast(bytes: Uint8Array): unknown {
  // 15: node:v8.serialize; 16: what Deno KV itself stores.
  if (bytes.length < 3 || bytes[0] !== VERSION || (bytes[1] !== 15 && bytes[1] !== 16)) {
    return NOT_HANDLED;
  }
  try {
    return new Reader(bytes).value();
  } catch (err) {
    if (err === BAIL || isStackOverflow(err)) return NOT_HANDLED;
    throw err;
  }
}
