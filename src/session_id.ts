/**
 * Session ids to directory names and back. The encoding is reversible and
 * path-safe: only `[a-z0-9_-]` stand for themselves; every other UTF-8 byte
 * (upper case included, for case-insensitive file systems) is written `~xx`.
 * Names that Windows reserves (`con`, `nul`, `com1`…) get their first letter
 * escaped. An encoded id longer than {@linkcode MAX_SEGMENT} characters is
 * split into nested directories, every one but the last ending in `+`.
 * Pure functions, no I/O.
 *
 * @module
 */

/** Longest id in UTF-8 bytes. */
export const MAX_ID_BYTES = 255;
/** Longest directory name produced (file systems allow 255 bytes). */
export const MAX_SEGMENT = 240;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])$/;
const HEX = "0123456789abcdef";

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
 * Encodes an id as one or more directory names.
 *
 * @param id A valid id (see {@linkcode validateId}).
 * @returns The directory names, outermost first.
 */
export function encodeId(id: string): string[] {
  const tokens: string[] = [];
  for (const b of encoder.encode(id)) {
    tokens.push(isLiteral(b) ? String.fromCharCode(b) : escape(b));
  }
  const segments: string[] = [];
  let current = "";
  for (const token of tokens) {
    // Never split an escape; leave room for the "+" and a reserved-name escape.
    if (current.length + token.length > MAX_SEGMENT - 3) {
      segments.push(current + "+");
      current = "";
    }
    current += token;
  }
  if (RESERVED.test(current)) current = escape(current.charCodeAt(0)) + current.slice(1);
  segments.push(current);
  return segments;
}

/** Whether a directory name continues into a nested one. */
export function isContinuation(name: string): boolean {
  return name.endsWith("+");
}

/**
 * Decodes directory names made by {@linkcode encodeId}.
 *
 * @param segments The names, outermost first.
 * @returns The id, or `undefined` when the names are not exactly what
 *   `encodeId` would produce (a directory that is not a session's).
 */
export function decodeId(segments: readonly string[]): string | undefined {
  let text = "";
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (isContinuation(s) === last) return undefined;
    text += last ? s : s.slice(0, -1);
  }
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7e) {
      const hex = text.slice(i + 1, i + 3);
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
  const canonical = encodeId(id);
  if (canonical.length !== segments.length) return undefined;
  for (let i = 0; i < canonical.length; i++) if (canonical[i] !== segments[i]) return undefined;
  return id;
}
