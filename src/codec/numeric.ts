/**
 * The `sum`, `min` and `max` mutations on encoded values, with Deno KV's
 * results and error messages (spec §2.6). Pure functions; a backend calls
 * {@linkcode applyNumeric} inside its commit transaction.
 *
 * @module
 */
import {
  decodeValue,
  type EncodedValue,
  encodeValue,
  ENCODING_LE64,
  ENCODING_V8,
} from "./value_codec.ts";

const U64 = 1n << 64n;

function readU64(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
}

function le64(value: bigint): EncodedValue {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return { encoding: ENCODING_LE64, bytes };
}

function typeName(value: unknown): string {
  return typeof value === "bigint" ? "BigInt" : "Number";
}

/**
 * Rejects a `sum` operand that is neither a `KvU64` nor a number or bigint.
 *
 * @throws {TypeError} "Some of the parameters are not valid V8 values".
 */
export function validateSumOperand(operand: EncodedValue): void {
  if (operand.encoding === ENCODING_LE64) return;
  if (operand.encoding === ENCODING_V8) {
    const v = decodeValue(operand.encoding, operand.bytes);
    if (typeof v === "number" || typeof v === "bigint") return;
  }
  throw new TypeError("Some of the parameters are not valid V8 values");
}

/**
 * Computes the value a numeric mutation writes.
 *
 * @param op `sum`, `min` or `max`.
 * @param current The key's live value, or `undefined` when absent.
 * @param operand The mutation's value.
 * @returns The value to store (without expiry).
 * @throws {TypeError} With Deno KV's message when the types do not combine.
 */
export function applyNumeric(
  op: "sum" | "min" | "max",
  current: EncodedValue | undefined,
  operand: EncodedValue,
): EncodedValue {
  if (operand.encoding === ENCODING_LE64) {
    if (current === undefined) return operand;
    if (current.encoding !== ENCODING_LE64) {
      throw new TypeError(`Failed to perform '${op}' mutation on a non-U64 value in the database`);
    }
    const a = readU64(current.bytes);
    const b = readU64(operand.bytes);
    if (op === "sum") return le64((a + b) % U64);
    return le64(op === "min" ? (a < b ? a : b) : (a > b ? a : b));
  }
  if (op !== "sum") {
    throw new TypeError(`Failed to perform '${op}' mutation on a non-U64 operand`);
  }
  const n = decodeValue(operand.encoding, operand.bytes);
  if (typeof n !== "number" && typeof n !== "bigint") {
    throw new TypeError("Some of the parameters are not valid V8 values");
  }
  if (current === undefined) return operand;
  if (current.encoding === ENCODING_LE64) {
    if (typeof n === "bigint" && n >= 0n && n < U64) {
      return le64((readU64(current.bytes) + n) % U64);
    }
    throw new TypeError(`Cannot sum KvU64 with ${typeName(n)}`);
  }
  const old = current.encoding === ENCODING_V8
    ? decodeValue(current.encoding, current.bytes)
    : undefined;
  if (typeof old === "number" && typeof n === "number") return encodeValue(old + n);
  if (typeof old === "bigint" && typeof n === "bigint") return encodeValue(old + n);
  if (typeof old === "number" || typeof old === "bigint") {
    throw new TypeError(`Cannot sum ${typeName(old)} with ${typeName(n)}`);
  }
  throw new TypeError("unsupported value type");
}
