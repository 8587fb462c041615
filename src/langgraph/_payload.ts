/**
 * Payloads larger than one KV value: split into chunks under a fresh nonce,
 * so chunks are written once and never overwritten, and a reader that found
 * a reference always finds the chunks it names.
 *
 * @module
 */
import type { SessionKv } from "../../mod.ts";
import { keyBytes, type SetMutation } from "./_commit.ts";
import { chunkPrefix, type PayloadRef } from "./_layout.ts";

/** A payload reference and the chunk writes it needs first. */
export interface PlannedPayload {
  ref: PayloadRef;
  chunks: SetMutation[];
}

function nonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * Keeps `bytes` inline when they and `overhead` fit one value of
 * `chunkBytes`, else splits them into chunks owned by checkpoint `ownerId`.
 *
 * @param bytes The payload.
 * @param overhead Upper bound of the other bytes of the value holding the reference.
 * @param ns The checkpoint namespace.
 * @param ownerId The checkpoint the payload belongs to.
 * @param chunkBytes Largest value the store accepts.
 */
export function planPayload(
  bytes: Uint8Array,
  overhead: number,
  ns: string,
  ownerId: string,
  chunkBytes: number,
): PlannedPayload {
  if (bytes.length + overhead <= chunkBytes) return { ref: { d: bytes }, chunks: [] };
  const id = nonce();
  const prefix = chunkPrefix(ns, ownerId, id);
  const chunks: SetMutation[] = [];
  for (let offset = 0, i = 0; offset < bytes.length; offset += chunkBytes, i++) {
    const key = [...prefix, i];
    const value = bytes.subarray(offset, offset + chunkBytes);
    chunks.push({ key, value, size: keyBytes(key) + value.length });
  }
  return { ref: { x: [id, chunks.length, bytes.length] }, chunks };
}

/** Upper bound of the serialised size of a payload reference. */
export function refBytes(ref: PayloadRef): number {
  return "d" in ref ? ref.d.length + 16 : 64;
}

/**
 * Reads a payload back.
 *
 * @throws {Error} When chunks are missing (the session was damaged).
 */
export async function readPayload(
  kv: SessionKv,
  ns: string,
  ownerId: string,
  ref: PayloadRef,
): Promise<Uint8Array> {
  if ("d" in ref) return ref.d;
  const [id, parts, size] = ref.x;
  const out = new Uint8Array(size);
  let offset = 0;
  let count = 0;
  const list = kv.list<Uint8Array>({ prefix: chunkPrefix(ns, ownerId, id) }, {
    limit: parts,
    batchSize: Math.min(parts, 1000),
  });
  for await (const { value } of list) {
    if (offset + value.length > size) break;
    out.set(value, offset);
    offset += value.length;
    count++;
  }
  if (count !== parts || offset !== size) {
    throw new Error(
      `Checkpoint data "${id}" of checkpoint "${ownerId}" is incomplete: ${offset} of ${size} bytes`,
    );
  }
  return out;
}
