/**
 * The binary record of one session entry, stored as a `Uint8Array` value (so
 * Deno KV keeps it as raw bytes and its size is exact):
 *
 * ```
 * flags u8 | encoding u8 | version f64 | expiry f64 (NaN: none)
 * [long key:  length u16 | key bytes]
 * [chunked:   chunk id f64 | chunk count u32 | value length u32]
 * [inline:    value bytes]
 * ```
 *
 * A value that would make the record larger than one Deno KV value lives in
 * chunks of 65536 bytes under `[..., "c", chunkId, i]`, written before the
 * record that points at them.
 *
 * @module
 */
import type { ValueEncoding } from "../codec/value_codec.ts";

/** Deno KV's value size limit. */
export const DENO_MAX_VALUE_BYTES = 65536;
/** Bytes of a value chunk. */
export const CHUNK_BYTES = 65536;

const FLAG_CHUNKED = 1;
const FLAG_LONG_KEY = 2;
const HEADER = 18;
const CHUNK_REF = 16;

/** A decoded entry record. */
export interface EntryRecord {
  /** Value encoding. */
  encoding: ValueEncoding;
  /** Commit version. */
  version: number;
  /** Expiry, epoch ms, or `null`. */
  expiresAt: number | null;
  /** The full session key, for keys stored cut. */
  key: Uint8Array | undefined;
  /** The value, when stored inline. */
  value: Uint8Array | undefined;
  /** Where the value is, when chunked. */
  chunks: { id: number; count: number; length: number } | undefined;
}

/** What {@linkcode encodeRecord} writes. */
export interface RecordInput {
  encoding: ValueEncoding;
  version: number;
  expiresAt: number | null;
  /** The full key, for a key stored cut. */
  longKey: Uint8Array | undefined;
  /** The value bytes (copied). */
  value: Uint8Array;
  /** The chunk id to use when the value does not fit inline. */
  chunkId: () => number;
}

/** An encoded record and the value chunks it points at. */
export interface EncodedRecord {
  /** The record bytes. */
  record: Uint8Array;
  /** The chunk id and chunks, when the value is chunked. */
  chunks: { id: number; parts: Uint8Array[] } | undefined;
}

/** Encodes an entry; a value too large for one record is split into chunks. */
export function encodeRecord(input: RecordInput): EncodedRecord {
  const keyBytes = input.longKey === undefined ? 0 : 2 + input.longKey.length;
  const inline = HEADER + keyBytes + input.value.length <= DENO_MAX_VALUE_BYTES;
  const size = HEADER + keyBytes + (inline ? input.value.length : CHUNK_REF);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = (inline ? 0 : FLAG_CHUNKED) | (input.longKey === undefined ? 0 : FLAG_LONG_KEY);
  out[1] = input.encoding;
  view.setFloat64(2, input.version);
  view.setFloat64(10, input.expiresAt ?? NaN);
  let pos = HEADER;
  if (input.longKey !== undefined) {
    view.setUint16(pos, input.longKey.length);
    out.set(input.longKey, pos + 2);
    pos += keyBytes;
  }
  if (inline) {
    out.set(input.value, pos);
    return { record: out, chunks: undefined };
  }
  const id = input.chunkId();
  const parts: Uint8Array[] = [];
  for (let i = 0; i < input.value.length; i += CHUNK_BYTES) {
    parts.push(input.value.slice(i, i + CHUNK_BYTES));
  }
  view.setFloat64(pos, id);
  view.setUint32(pos + 8, parts.length);
  view.setUint32(pos + 12, input.value.length);
  return { record: out, chunks: { id, parts } };
}

/** Thrown for a stored value this backend did not write (a damaged session). */
export class RecordError extends TypeError {
  /** @param message What is wrong. */
  constructor(message: string) {
    super(message);
    this.name = "RecordError";
  }
}

/**
 * Decodes a record.
 *
 * @throws {RecordError} When the bytes are not a record.
 */
export function decodeRecord(bytes: Uint8Array): EntryRecord {
  if (!(bytes instanceof Uint8Array) || bytes.length < HEADER) {
    throw new RecordError("Not a sessionkv entry record");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = bytes[0]!;
  const exp = view.getFloat64(10);
  let pos = HEADER;
  let key: Uint8Array | undefined;
  if (flags & FLAG_LONG_KEY) {
    const n = view.getUint16(pos);
    key = bytes.subarray(pos + 2, pos + 2 + n);
    pos += 2 + n;
  }
  const record: EntryRecord = {
    encoding: bytes[1] as ValueEncoding,
    version: view.getFloat64(2),
    expiresAt: Number.isNaN(exp) ? null : exp,
    key,
    value: undefined,
    chunks: undefined,
  };
  if (flags & FLAG_CHUNKED) {
    record.chunks = {
      id: view.getFloat64(pos),
      count: view.getUint32(pos + 8),
      length: view.getUint32(pos + 12),
    };
  } else {
    record.value = bytes.subarray(pos);
  }
  return record;
}

/** Bytes a record accounts for in `sizeBytes`: its key and value. */
export function recordSize(key: Uint8Array, record: EntryRecord): number {
  return key.length + (record.chunks?.length ?? record.value?.length ?? 0);
}
