/**
 * Session ids to directory names and back. The encoding is reversible and
 * path-safe: only `[a-z0-9_-]` stand for themselves; every other UTF-8 byte
 * (upper case included, for case-insensitive file systems) is written `~xx`.
 * Names that Windows reserves (`con`, `nul`, `com1`…) get their first letter
 * escaped. Long ids are named by their hash (see {@linkcode encodeId}).
 * Pure functions, no I/O.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** Longest id in UTF-8 bytes. */
export const MAX_ID_BYTES = 255;
/** Longest escaped name kept as is; longer ids are hashed. */
export const MAX_NAME = 120;
/** The file holding the id of a directory named by hash. */
export const ID_FILE = "id";
const HASHED = "~h";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])$/;
const HEX = "0123456789abcdef";
const LITERAL = /^[a-z0-9_-]+$/;

function isLiteral(b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x5f || b === 0x2d;
}

function escape(b: number): string {
  return "~" + HEX[b >> 4] + HEX[b & 15];
}

/**
 * Validates an id.
 *
 * @param what `"botId"` or `"sessionId"`, for the message.
 * @throws {TypeError} When `id` is not a non-empty, well-formed string of at
 *   most 255 UTF-8 bytes.
 */
export function validateId(id: unknown, what: string): asserts id is string {
  if (typeof id !== "string") {
    throw new TypeError(`${what} must be a string: received ${typeof id}`);
  }
  if (id.length === 0) throw new TypeError(`${what} cannot be empty`);
  if (!id.isWellFormed()) {
    throw new TypeError(`${what} must be well-formed Unicode: received "${id}"`);
  }
  const bytes = encoder.encode(id).length;
  if (bytes > MAX_ID_BYTES) {
    throw new TypeError(`${what} is too long: ${bytes} UTF-8 bytes (max ${MAX_ID_BYTES})`);
  }
}

/**
 * Encodes an id as a directory name: the escaped id, or, when that would be
 * longer than {@linkcode MAX_NAME} characters, `~h` and the SHA-256 of the id
 * (SQLite refuses database paths over ~512 bytes, and an id of 255 bytes can
 * escape to 765 characters). A hashed directory keeps its id in an
 * {@linkcode ID_FILE}.
 *
 * @param id A valid id (see {@linkcode validateId}).
 * @returns The directory name.
 */
export function encodeId(id: string): string {
  // The common case, an id already made of literal characters, is its own
  // name: no bytes to encode (this runs several times per session opened).
  if (id.length <= MAX_NAME && LITERAL.test(id) && !RESERVED.test(id)) return id;
  let name = "";
  for (const b of encoder.encode(id)) name += isLiteral(b) ? String.fromCharCode(b) : escape(b);
  if (name.length > MAX_NAME) return HASHED + createHash("sha256").update(id).digest("hex");
  if (RESERVED.test(name)) name = escape(name.charCodeAt(0)) + name.slice(1);
  return name;
}

/** Whether a directory name is a hashed id, whose id is in its {@linkcode ID_FILE}. */
export function isHashed(name: string): boolean {
  return name.startsWith(HASHED);
}

/**
 * Decodes a directory name made by {@linkcode encodeId}.
 *
 * @param name The directory name.
 * @param idFile For a hashed name, the contents of its {@linkcode ID_FILE}.
 * @returns The id, or `undefined` when the name is not exactly what
 *   `encodeId` would produce (a directory that is not a session's).
 */
export function decodeId(name: string, idFile?: string): string | undefined {
  if (isHashed(name)) {
    if (idFile === undefined) return undefined;
    try {
      validateId(idFile, "id");
    } catch {
      return undefined;
    }
    return encodeId(idFile) === name ? idFile : undefined;
  }
  const bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x7e) {
      const hex = name.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (isLiteral(c)) {
      bytes.push(c);
    } else {
      return undefined;
    }
  }
  let id: string;
  try {
    id = decoder.decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
  if (id.length === 0 || bytes.length > MAX_ID_BYTES) return undefined;
  return encodeId(id) === name ? id : undefined;
}
