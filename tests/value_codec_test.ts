/**
 * Tests for `src/codec/value_codec.ts`: the fast V8 wire writer/reader against
 * `node:v8`, Deno KV's value round trips (spec §4) and real Deno KV as the
 * oracle. Run with `--unstable-kv`.
 */
import { deepStrictEqual, equal, notEqual, ok } from "node:assert/strict";
import v8 from "node:v8";
import { Buffer } from "node:buffer";
import { DatabaseSync } from "node:sqlite";
import { KvU64 } from "../src/kv_u64.ts";
import {
  decodeValue,
  deserializeV8,
  encodeValue,
  ENCODING_BYTES,
  ENCODING_LE64,
  ENCODING_V8,
  serializeV8,
} from "../src/codec/value_codec.ts";
import { NOT_HANDLED, readFast, writeFast } from "../src/codec/_v8_wire.ts";
import { mulberry32 } from "./_helpers.ts";

// ---------------------------------------------------------------- helpers

/**
 * An empty array from its own literal: V8 makes arrays from one allocation site
 * start in the elements kind seen there before (doubles, in other tests).
 */
function freshArray(): unknown[] {
  return [];
}

interface GenOptions {
  /** Only values whose node:v8 bytes are predictable: no doubles, no -0, no undefined. */
  predictable: boolean;
}

/** Random values of the fast-path types, with shared and circular references. */
class ValueGen {
  #rand: () => number;
  #opts: GenOptions;
  #made: object[] = [];
  #stack: object[] = [];

  constructor(seed: number, opts: GenOptions) {
    this.#rand = mulberry32(seed);
    this.#opts = opts;
  }

  int(n: number): number {
    return Math.floor(this.#rand() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  value(depth = 0): unknown {
    this.#made = depth === 0 ? [] : this.#made;
    const kinds = depth >= 4
      ? ["prim", "string", "bigint", "date"]
      : ["prim", "string", "bigint", "date", "array", "object", "object", "ref"];
    switch (this.pick(kinds)) {
      case "prim":
        return this.primitive();
      case "string":
        return this.string();
      case "bigint":
        return this.bigint();
      case "date":
        return this.remember(
          this.int(8) === 0 ? new Date(NaN) : new Date(this.int(2 ** 42) - 2 ** 41),
        );
      case "array": {
        const a = this.#opts.predictable ? freshArray() : [];
        this.remember(a);
        this.#stack.push(a);
        for (let i = this.int(7); i > 0; i--) a.push(this.value(depth + 1));
        this.#stack.pop();
        return a;
      }
      case "object":
        return this.object(depth);
      default: { // ref: a shared object or an ancestor (cycle)
        const from = this.int(2) === 0 ? this.#made : this.#stack;
        return from.length > 0 ? this.pick(from) : null;
      }
    }
  }

  remember<T extends object>(o: T): T {
    this.#made.push(o);
    return o;
  }

  primitive(): unknown {
    const ints = [
      0,
      1,
      -1,
      63,
      64,
      -64,
      -65,
      127,
      128,
      2 ** 31 - 1,
      -(2 ** 31),
      2 ** 30,
      -(2 ** 30) - 1,
    ];
    const choices: unknown[] = [
      this.#opts.predictable ? "u" : undefined, // V8 may store [undefined] holey
      null,
      true,
      false,
      this.pick(ints) | 0,
      (this.int(2 ** 32) - 2 ** 31) | 0,
      (this.int(1000) - 500) | 0,
    ];
    if (!this.#opts.predictable) {
      choices.push(
        this.pick([
          -0,
          NaN,
          Infinity,
          -Infinity,
          2 ** 31,
          -(2 ** 31) - 1,
          2 ** 53 - 1,
          5e-324,
          Number.MAX_VALUE,
        ]),
        (this.#rand() - 0.5) * 10 ** this.int(20),
      );
    }
    return this.pick(choices);
  }

  bigint(): bigint {
    const fixed = [0n, 1n, -1n, 2n ** 63n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 64n, -(2n ** 64n)];
    if (this.int(2) === 0) return this.pick(fixed);
    let hex = "";
    for (let i = this.int(80) + 1; i > 0; i--) hex += this.int(16).toString(16);
    const n = BigInt("0x" + hex);
    return this.int(2) === 0 ? -n : n;
  }

  string(): string {
    const length = this.pick([0, 1, 3, 16, 24, 25, 55, 56, 95, 96, 200]);
    const alphabet = this.pick(["ascii", "latin1", "two-byte", "emoji", "surrogates", "mixed"]);
    const codes: number[] = [];
    while (codes.length < length) {
      const kind = alphabet === "mixed"
        ? this.pick(["ascii", "latin1", "two-byte", "emoji", "surrogates"])
        : alphabet;
      if (kind === "ascii") codes.push(0x20 + this.int(0x5f));
      else if (kind === "latin1") codes.push(this.int(0x100));
      else if (kind === "two-byte") {
        codes.push(this.pick([0x416, 0x2014, 0xfffd, 0xfeff, 0x100 + this.int(0xd700)]));
      } else if (kind === "emoji") codes.push(0xd83d, 0xde00 + this.int(0x40));
      else codes.push(0xd800 + this.int(0x800)); // lone surrogate
    }
    return String.fromCharCode(...codes.slice(0, length));
  }

  key(): string {
    const keys = [
      "a",
      "role",
      "text",
      "é",
      "ж",
      "😀",
      "",
      "0",
      "7",
      "42",
      "2147483647",
      "2147483648",
      "4294967294",
    ];
    const odd = [
      "4294967295",
      "01",
      "-1",
      "1.5",
      "1e3",
      " 1",
      "__proto__",
      "constructor",
      "toString",
    ];
    return this.int(3) === 0 ? this.pick(odd) : this.int(3) === 0 ? this.string() : this.pick(keys);
  }

  object(depth: number): object {
    const o: Record<string, unknown> = this.int(6) === 0 ? Object.create(null) : {};
    this.remember(o);
    this.#stack.push(o);
    for (let i = this.int(7); i > 0; i--) {
      const key = this.key();
      // Own key names keep V8's shared object shapes (maps) apart from other
      // tests: a field that once held a double stores even ints as doubles.
      Object.defineProperty(o, this.#opts.predictable && !/^\d/.test(key) ? `·${key}` : key, {
        value: this.value(depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    this.#stack.pop();
    return o;
  }
}

/** Describes which objects are the same object, in visit order. */
function aliasShape(value: unknown): string {
  const ids = new Map<object, number>();
  const out: string[] = [];
  const walk = (x: unknown, path: string): void => {
    if (typeof x !== "object" || x === null) return;
    const id = ids.get(x);
    if (id !== undefined) {
      out.push(`${path}->#${id}`);
      return;
    }
    ids.set(x, ids.size);
    if (x instanceof Date) return;
    for (const k of Object.keys(x)) walk((x as Record<string, unknown>)[k], `${path}.${k}`);
  };
  walk(value, "$");
  return out.join(" ");
}

/** Asserts deep equality and the same shared/circular structure. */
function assertSameValue(actual: unknown, expected: unknown, what: string): void {
  deepStrictEqual(actual, expected, what);
  equal(aliasShape(actual), aliasShape(expected), `${what}: reference structure`);
}

const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");

function nodeSerialize(value: unknown): Uint8Array {
  const b = v8.serialize(value);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

const roundTrip = (value: unknown): unknown => {
  const { encoding, bytes } = encodeValue(value);
  return decodeValue(encoding, bytes);
};

function caught(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    ok(err instanceof Error, "threw a non-Error");
    return err;
  }
  throw new Error("expected a throw");
}

function assertThrowsExactly(fn: () => unknown, Class: ErrorConstructor, message: string): void {
  const err = caught(fn);
  equal(err.constructor, Class, `error class for ${JSON.stringify(message)}`);
  equal(err.message, message);
}

// ------------------------------------------------------- 1. node:v8 parity

Deno.test("serializeV8() and deserializeV8() agree with node:v8 on random plain data", () => {
  const gen = new ValueGen(20240607, { predictable: false });
  for (let i = 0; i < 3000; i++) {
    const value = gen.value();
    const what = `value #${i}`;
    const expected = v8.deserialize(v8.serialize(value));
    const fast = writeFast(value);
    ok(fast !== undefined, `${what}: fast writer bailed`);
    const ours = serializeV8(value);
    assertSameValue(v8.deserialize(ours), expected, `${what}: node:v8 reads ours`);
    const theirs = nodeSerialize(value);
    ok(readFast(theirs) !== NOT_HANDLED, `${what}: fast reader bailed on node:v8 bytes`);
    assertSameValue(deserializeV8(theirs), expected, `${what}: we read node:v8's`);
    ok(readFast(ours) !== NOT_HANDLED, `${what}: fast reader bailed on ours`);
    assertSameValue(deserializeV8(ours), expected, `${what}: we read ours`);
  }
});

Deno.test("serializeV8() writes the same bytes as node:v8 for ints, strings, objects and arrays", () => {
  const gen = new ValueGen(7, { predictable: true });
  for (let i = 0; i < 3000; i++) {
    const value = gen.value();
    equal(hex(serializeV8(value)), hex(nodeSerialize(value)), `value #${i}`);
  }
  const fixed: unknown[] = [
    { role: "user", text: "hello world" },
    ["ab", "ж", "c"], // two-byte string needing a padding byte
    [1, "ж"],
    { "1": 1, a: 2, "4294967294": 3, "4294967295": 4 },
    "a".repeat(300),
    "ж".repeat(300),
    [new Date(0), 5n, -(2n ** 70n)],
  ];
  for (const value of fixed) {
    equal(hex(serializeV8(value)), hex(nodeSerialize(value)), Deno.inspect(value));
  }
});

Deno.test("deserializeV8() reads what node:v8 writes for sparse arrays and arrays with properties", () => {
  // deno-lint-ignore no-sparse-arrays
  const sparse = [1, , 3];
  const holey = new Array(3);
  holey[0] = "a";
  holey[2] = { b: 1 };
  const withProps = Object.assign([1, 2], { extra: "x" });
  for (const value of [sparse, holey, withProps, new Array(5)]) {
    const bytes = nodeSerialize(value);
    ok(readFast(bytes) !== NOT_HANDLED, Deno.inspect(value));
    const back = deserializeV8(bytes) as unknown[];
    deepStrictEqual(back, value);
    equal(1 in back, 1 in value, "hole kept");
  }
});

/** Values whose V8 bytes Deno KV and `serializeV8()` both predictably write. */
function sharedViews(): unknown {
  const buffer = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]).buffer;
  return [new Uint8Array(buffer, 0, 2), new Int16Array(buffer, 2, 2), buffer];
}

/** Stores values in a Deno KV file and returns its raw rows, in key order. */
async function storedByDenoKv(values: unknown[]): Promise<{ v: Uint8Array; enc: number }[]> {
  const dir = await Deno.makeTempDir({ prefix: "sessionkv-value-codec-" });
  try {
    const path = `${dir}/kv.sqlite3`;
    const kv = await Deno.openKv(path);
    for (const [i, value] of values.entries()) await kv.set([i], value);
    kv.close();
    const db = new DatabaseSync(path);
    const rows = db.prepare("SELECT v, v_encoding FROM kv ORDER BY k").all();
    db.close();
    return rows.map((row) => ({ v: row.v as Uint8Array, enc: row.v_encoding as number }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("serializeV8() writes the bytes Deno KV stores, after the version byte", async () => {
  const u16 = new Uint16Array([7]);
  const values: unknown[] = [
    { role: "user", text: "hello world", tokens: 12, big: -(2n ** 80n) },
    ["ab", "ж", "😀", "é".repeat(30), new Date(0), null, true],
    { "1": 1, a: { b: [1, 2, 3] }, "4294967295": "x" },
    new Int8Array([1, -1]),
    { sub: new Uint8Array([1, 2, 3, 4]).subarray(1, 3) },
    new DataView(new Uint8Array([1, 2, 3]).buffer, 1),
    sharedViews(),
    [u16, u16],
    new Float16Array([1.5]),
    new BigInt64Array([-1n]),
    new ArrayBuffer(3),
    new Map([["k", new Int16Array([1, 2])]]), // through node:v8's Serializer
  ];
  const rows = await storedByDenoKv(values);
  equal(rows.length, values.length);
  for (const [i, row] of rows.entries()) {
    equal(row.enc, ENCODING_V8);
    deepStrictEqual([row.v[0], row.v[1]], [0xff, 0x10], "Deno KV writes V8 version 16");
    const ours = serializeV8(values[i]);
    deepStrictEqual([ours[0], ours[1]], [0xff, 0x0f], "we write version 15, as node:v8 does");
    equal(hex(ours.subarray(2)), hex(row.v.subarray(2)), Deno.inspect(values[i]));
  }
});

Deno.test("deserializeV8() reads V8 version 16 payloads as Deno KV stores them", async () => {
  const values: unknown[] = [
    { role: "user", text: "hello world", n: 1.5, big: -(2n ** 80n) },
    ["ж", "😀", new Date(0)],
    sharedViews(),
    new Map([["k", new Int16Array([1, 2])]]),
  ];
  const rows = await storedByDenoKv(values);
  for (const [i, row] of rows.entries()) {
    if (i < 3) ok(readFast(row.v) !== NOT_HANDLED, "read by the fast path");
    assertSameValue(decodeValue(row.enc, row.v), values[i], Deno.inspect(values[i]));
  }
});

Deno.test("serializeV8() round-trips random typed arrays, DataViews and shared buffers", () => {
  const rand = mulberry32(5);
  const types = [
    Int8Array,
    Uint8Array,
    Uint8ClampedArray,
    Int16Array,
    Uint16Array,
    Int32Array,
    Uint32Array,
    Float16Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
  ];
  for (let i = 0; i < 500; i++) {
    const buffer = new ArrayBuffer(8 * Math.floor(rand() * 6));
    new Uint8Array(buffer).forEach((_, j, a) => a[j] = Math.floor(rand() * 256));
    const value: unknown[] = [];
    for (let n = Math.floor(rand() * 4); n > 0; n--) {
      const View = types[Math.floor(rand() * types.length)]!;
      const size = View.BYTES_PER_ELEMENT;
      const offset = size * Math.floor(rand() * (buffer.byteLength / size + 1));
      const length = Math.floor(rand() * ((buffer.byteLength - offset) / size + 1));
      value.push(
        rand() < 0.2
          ? new DataView(buffer, offset, length * size)
          : new View(buffer, offset, length),
      );
      if (rand() < 0.2) value.push(buffer);
      if (rand() < 0.2) value.push({ again: value[Math.floor(rand() * value.length)] });
    }
    ok(writeFast(value) !== undefined, `value #${i}: fast writer bailed`);
    const bytes = serializeV8(value);
    const expected = v8.deserialize(v8.serialize(value));
    assertSameValue(v8.deserialize(bytes), expected, `value #${i}: node:v8 reads ours`);
    assertSameValue(deserializeV8(bytes), expected, `value #${i}: we read ours`);
    assertSameValue(
      deserializeV8(nodeSerialize(value)),
      expected,
      `value #${i}: node host objects`,
    );
  }
});

Deno.test("serializeV8() results stay intact across many calls and large values", () => {
  const gen = new ValueGen(99, { predictable: false });
  const values = Array.from({ length: 2000 }, () => gen.value());
  values.push(
    "x".repeat(100_000),
    { big: "ж".repeat(50_000) },
    Array.from({ length: 5000 }, (_, i) => ({ i })),
    (() => { // back-references past the ids the writer scans linearly
      const objects = Array.from({ length: 200 }, (_, i) => ({ i }));
      return [...objects, ...objects.toReversed(), { all: objects }];
    })(),
  );
  for (const value of values.slice(-4)) ok(writeFast(value) !== undefined, "fast path");
  const encoded = values.map((v) => serializeV8(v));
  for (const [i, bytes] of encoded.entries()) {
    assertSameValue(deserializeV8(bytes), v8.deserialize(v8.serialize(values[i])), `value #${i}`);
  }
});

Deno.test("encodeValue() handles deep nesting like Deno KV: round trip, or RangeError past the stack", async () => {
  using kv = await Deno.openKv(":memory:");
  const nested = (depth: number) => {
    let value: unknown = "leaf";
    for (let i = 0; i < depth; i++) value = [value];
    return value;
  };
  deepStrictEqual(roundTrip(nested(1000)), nested(1000));
  const tooDeep = nested(20_000);
  await kv.set(["v"], tooDeep).then(() => ok(false, "Deno KV accepted"), (err) => {
    equal(err.constructor, RangeError);
    assertThrowsExactly(() => encodeValue(tooDeep), RangeError, err.message);
  });
});

Deno.test("serializeV8() is re-entrant: a getter may serialize another value", () => {
  const inner = { deep: ["x", 1] };
  let innerBytes: Uint8Array | undefined;
  const outer = {
    a: "before",
    get b() {
      innerBytes = serializeV8(inner);
      return "from getter";
    },
    c: [1, 2, 3],
  };
  const bytes = serializeV8(outer);
  deepStrictEqual(deserializeV8(bytes), { a: "before", b: "from getter", c: [1, 2, 3] });
  deepStrictEqual(deserializeV8(innerBytes!), inner);
});

Deno.test("serializeV8() leaves proxies, arguments and exotic objects to node:v8", () => {
  const args = (function (..._a: unknown[]) {
    return arguments;
  })(1, 2);
  class Sub extends Array {}
  for (
    const value of [
      new Proxy({ a: 1 }, {}),
      new Proxy([1], {}),
      args,
      Sub.from([1]),
      new Map(),
      /x/,
    ]
  ) {
    equal(writeFast(value), undefined, Deno.inspect(value));
  }
});

// ---------------------------------------------------- 2. spec §4 round trips

Deno.test("encodeValue() stores Uint8Array, Buffer and subarrays as their visible bytes", () => {
  const source = new Uint8Array([1, 2, 3, 4]);
  for (const value of [source, Buffer.from([1, 2, 3, 4]), source.subarray(1, 3)]) {
    const { encoding, bytes } = encodeValue(value);
    equal(encoding, ENCODING_BYTES);
    deepStrictEqual(bytes, new Uint8Array(value));
    notEqual(bytes.buffer, source.buffer, "copied, not a view");
    const back = decodeValue(encoding, bytes) as Uint8Array;
    equal(Object.getPrototypeOf(back), Uint8Array.prototype);
    deepStrictEqual(back, new Uint8Array(value));
    bytes[0] = 99;
    notEqual(back[0], 99, "decoded copy is independent");
  }
  const fake = { [Symbol.toStringTag]: "Uint8Array", 0: 1, length: 1 };
  equal(encodeValue(fake).encoding, ENCODING_V8, "only real Uint8Arrays are raw bytes");
});

Deno.test("encodeValue() stores a top-level KvU64 as 8 little-endian bytes", () => {
  for (const value of [new KvU64(258n), new Deno.KvU64(258n)]) {
    const { encoding, bytes } = encodeValue(value);
    equal(encoding, ENCODING_LE64);
    deepStrictEqual(bytes, new Uint8Array([2, 1, 0, 0, 0, 0, 0, 0]));
    const back = decodeValue(encoding, bytes);
    ok(back instanceof KvU64);
    equal(back.value, 258n);
  }
  equal(
    (decodeValue(ENCODING_LE64, encodeValue(new KvU64(2n ** 64n - 1n)).bytes) as KvU64).value,
    2n ** 64n - 1n,
  );
});

Deno.test("decodeValue() rejects unknown encodings and malformed LE64 payloads", () => {
  assertThrowsExactly(
    () => decodeValue(4, new Uint8Array()),
    TypeError,
    "Unknown value encoding: 4",
  );
  assertThrowsExactly(
    () => decodeValue(0, new Uint8Array()),
    TypeError,
    "Unknown value encoding: 0",
  );
  assertThrowsExactly(
    () => decodeValue(ENCODING_LE64, new Uint8Array(7)),
    TypeError,
    "LE64 value must be 8 bytes: received 7",
  );
});

Deno.test("encodeValue() round-trips primitives, -0, NaN, Infinity, bigints and Dates", () => {
  const values = [
    "",
    "s",
    0,
    -0,
    1.5,
    NaN,
    Infinity,
    -Infinity,
    2n ** 200n,
    -5n,
    true,
    false,
    null,
    undefined,
  ];
  for (const value of values) {
    const { encoding } = encodeValue(value);
    equal(encoding, ENCODING_V8);
    ok(Object.is(roundTrip(value), value), String(value));
  }
  deepStrictEqual(roundTrip(new Date(1_700_000_000_000)), new Date(1_700_000_000_000));
  ok(Number.isNaN((roundTrip(new Date(NaN)) as Date).getTime()), "Invalid Date");
});

Deno.test("encodeValue() round-trips Map, Set, RegExp, typed arrays, DataView and ArrayBuffer", () => {
  const map = new Map<unknown, unknown>([[1, "a"], [{ k: 1 }, new Set([1, "x"])]]);
  deepStrictEqual(roundTrip(map), map);
  deepStrictEqual(roundTrip(new Set([1, "x", { y: 2 }])), new Set([1, "x", { y: 2 }]));
  const re = roundTrip(/ab+c/gi) as RegExp;
  ok(re instanceof RegExp);
  equal(re.source, "ab+c");
  equal(re.flags, "gi");
  for (
    const view of [
      new Int16Array([1, -2]),
      new Float64Array([1.5, NaN]),
      new Uint8ClampedArray([255]),
    ]
  ) {
    const back = roundTrip(view);
    equal(Object.getPrototypeOf(back), Object.getPrototypeOf(view));
    deepStrictEqual(back, view);
  }
  const dv = roundTrip(new DataView(new Uint8Array([1, 2, 3]).buffer, 1)) as DataView;
  ok(dv instanceof DataView);
  deepStrictEqual([dv.byteLength, dv.getUint8(0)], [2, 2]);
  const ab = roundTrip(new Uint8Array([7, 8]).buffer);
  ok(ab instanceof ArrayBuffer);
  deepStrictEqual(new Uint8Array(ab), new Uint8Array([7, 8]));
  deepStrictEqual(roundTrip({ nested: new Uint8Array([1]) }), { nested: new Uint8Array([1]) });
});

Deno.test("encodeValue() keeps array holes and circular references", () => {
  // deno-lint-ignore no-sparse-arrays
  const sparse = roundTrip([1, , 3]) as unknown[];
  equal(sparse.length, 3);
  ok(!(1 in sparse), "hole kept");
  const self: Record<string, unknown> = { name: "loop" };
  self.self = self;
  const back = roundTrip(self) as Record<string, unknown>;
  equal(back.self, back);
  const shared = { s: 1 };
  const pair = roundTrip([shared, shared]) as unknown[];
  equal(pair[0], pair[1]);
});

Deno.test("encodeValue() keeps Error class, message and stack", () => {
  for (const err of [new Error("a"), new TypeError("b"), new RangeError("c")]) {
    const back = roundTrip(err) as Error;
    equal(back.constructor, err.constructor);
    equal(back.message, err.message);
    equal(back.stack, err.stack);
  }
});

Deno.test("encodeValue() keeps boxed primitives as wrapper objects", () => {
  const values = [new Number(3), new String("s"), new Boolean(false), Object(5n)];
  for (const value of values) {
    const back = roundTrip(value);
    equal(typeof back, "object");
    equal(Object.getPrototypeOf(back), Object.getPrototypeOf(value));
    ok(Object.is((back as { valueOf(): unknown }).valueOf(), value.valueOf()));
  }
});

Deno.test("encodeValue() turns class instances, getters and null-prototype objects into plain data", () => {
  class Point {
    x = 1;
    #hidden = 2;
    get sum(): number {
      return this.x + this.#hidden;
    }
  }
  const point = roundTrip(new Point());
  equal(Object.getPrototypeOf(point), Object.prototype);
  deepStrictEqual(point, { x: 1 });
  const withGetter = roundTrip({
    get now() {
      return 42;
    },
  });
  deepStrictEqual(Object.getOwnPropertyDescriptor(withGetter, "now"), {
    value: 42,
    writable: true,
    enumerable: true,
    configurable: true,
  });
  const undef = roundTrip({ a: undefined }) as object;
  ok("a" in undef);
  deepStrictEqual(roundTrip({ [Symbol("s")]: 1, b: 2 }), { b: 2 });
  const bare = roundTrip(Object.assign(Object.create(null), { a: 1 }));
  equal(Object.getPrototypeOf(bare), Object.prototype);
  deepStrictEqual(bare, { a: 1 });
  const protoKey = roundTrip(JSON.parse('{"__proto__": 1, "b": 2}')) as Record<string, unknown>;
  equal(Object.getPrototypeOf(protoKey), Object.prototype);
  deepStrictEqual(Object.getOwnPropertyDescriptor(protoKey, "__proto__")?.value, 1);
});

Deno.test("encodeValue() turns a nested KvU64 into a plain { value } object", () => {
  deepStrictEqual(roundTrip({ n: new KvU64(7n) }), { n: { value: 7n } });
  deepStrictEqual(roundTrip({ n: new Deno.KvU64(7n) }), { n: { value: 7n } });
});

Deno.test("encodeValue() rejects unclonable values with Deno KV's error class and message", () => {
  assertThrowsExactly(() => encodeValue(() => {}), TypeError, "()=>{} could not be cloned.");
  assertThrowsExactly(
    () => encodeValue({ a: [() => {}] }),
    TypeError,
    "()=>{} could not be cloned.",
  );
  assertThrowsExactly(() => encodeValue(Symbol("s")), TypeError, "Symbol(s) could not be cloned.");
  assertThrowsExactly(
    () => encodeValue({ s: Symbol("s") }),
    TypeError,
    "Symbol(s) could not be cloned.",
  );
  assertThrowsExactly(
    () => encodeValue(new WeakMap()),
    TypeError,
    "#<WeakMap> could not be cloned.",
  );
  assertThrowsExactly(
    () => encodeValue([new WeakSet()]),
    TypeError,
    "#<WeakSet> could not be cloned.",
  );
  assertThrowsExactly(
    () => encodeValue(Promise.resolve()),
    TypeError,
    "#<Promise> could not be cloned.",
  );
  assertThrowsExactly(
    () => encodeValue(new SharedArrayBuffer(1)),
    Error,
    "#<SharedArrayBuffer> could not be cloned.",
  );
  assertThrowsExactly(
    () => encodeValue({ sab: new SharedArrayBuffer(1) }),
    Error,
    "#<SharedArrayBuffer> could not be cloned.",
  );
  const wasm = new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
  assertThrowsExactly(() => encodeValue({ wasm }), TypeError, "Wasm modules cannot be stored");
  assertThrowsExactly(
    () => encodeValue(new Proxy({}, {})),
    TypeError,
    "#<Object> could not be cloned.",
  );
});

Deno.test("encodeValue() lets a getter's own error through unchanged", () => {
  const err = caught(() =>
    encodeValue({
      get boom(): never {
        throw new RangeError("nope");
      },
    })
  );
  equal(err.constructor, RangeError);
  equal(err.message, "nope");
});

// ------------------------------------------------------ 3. size boundaries

Deno.test("encodeValue() sizes match spec §4 at the 65536-byte value limit", () => {
  const size = (value: unknown) => encodeValue(value).bytes.length;
  equal(size(new Uint8Array(65536)), 65536);
  equal(size(new Uint8Array(65537)), 65537);
  equal(size("a".repeat(65530)), 65536, "longest one-byte string");
  equal(size("a".repeat(65531)), 65537);
  equal(size("é".repeat(65530)), 65536, "é is a one-byte char");
  equal(size("ж".repeat(32765)), 65536, "longest two-byte string");
  equal(size("ж".repeat(32766)), 65538);
  equal(size("😀".repeat(16382)), 65534, "an emoji is two UTF-16 units");
  equal(size(new Int8Array(65523)), 65536, "longest Int8Array");
  equal(size(new Int8Array(65524)), 65537);
});

Deno.test("encodeValue() sizes decide like Deno KV's value limit", async () => {
  using kv = await Deno.openKv(":memory:");
  const accepted = async (value: unknown) => {
    try {
      await kv.set(["v"], value);
      return true;
    } catch (err) {
      equal((err as Error).message, "Value too large (max 65536 bytes)");
      return false;
    }
  };
  const cases: [unknown, number][] = [
    [new Uint8Array(65536), 65536],
    [new Uint8Array(65537), 65537],
    ["a".repeat(65530), 65536],
    ["a".repeat(65531), 65537],
    ["é".repeat(65531), 65537],
    ["ж".repeat(32765), 65536],
    ["ж".repeat(32766), 65538],
    [["a".repeat(65525)], 65536],
    [["a".repeat(65526)], 65537],
    [{ k: "ж".repeat(32762) }, 65536],
    [{ k: "ж".repeat(32763) }, 65538],
    [{ ab: "ж".repeat(32761) }, 65536], // with a padding byte before the string
    [{ ab: "ж".repeat(32762) }, 65538],
    [new Int8Array(65523), 65536],
    [new Int8Array(65524), 65537],
    [new Map([["k", new Int8Array(65517)]]), 65536], // via node:v8's Serializer
    [new Map([["k", new Int8Array(65518)]]), 65537],
  ];
  for (const [value, size] of cases) {
    const what = Deno.inspect(value).slice(0, 40);
    equal(encodeValue(value).bytes.length, size, what);
    equal(await accepted(value), size <= 65536, what);
  }
});

// ------------------------------------------------------ 4. Deno KV oracle

function oracleValues(): [string, unknown][] {
  const self: Record<string, unknown> = { a: 1 };
  self.self = self;
  const shared = { s: "shared" };
  const withGetter = {
    get g() {
      return "got";
    },
  };
  // deno-lint-ignore no-sparse-arrays
  const sparse = [1, , 3];
  const gen = new ValueGen(4242, { predictable: false });
  return [
    ["primitives", [
      "",
      "s",
      0,
      -0,
      1.5,
      NaN,
      Infinity,
      -Infinity,
      10n ** 40n,
      -(10n ** 40n),
      true,
      null,
      undefined,
    ]],
    ["strings", [
      "é",
      "ж",
      "😀",
      "\ud800",
      "a\udc00b",
      "\ufeffbom",
      "x".repeat(1000),
      "ж—".repeat(100),
    ]],
    ["chat message", { role: "user", text: "hello world", at: new Date(0), tokens: 12 }],
    ["dates", [new Date(1_700_000_000_000), new Date(NaN)]],
    ["map and set", new Map<unknown, unknown>([[1, new Set(["a"])], [{ k: 1 }, [2]]])],
    ["regexp", /ab+c/gi],
    ["typed arrays", [
      new Int16Array([1, -2]),
      new Float64Array([0.5]),
      new DataView(new ArrayBuffer(3)),
    ]],
    ["array buffer", new Uint8Array([7, 8]).buffer],
    ["nested Uint8Array", { bytes: new Uint8Array([1, 2]) }],
    ["nested subarray", [new Uint8Array([1, 2, 3, 4]).subarray(1, 3)]],
    ["views sharing a buffer", sharedViews()],
    ["Float16Array, BigInt64Array", [new Float16Array([1.5]), new BigInt64Array([-1n])]],
    ["typed arrays in a Map", new Map([["k", new Int16Array([1, 2])]])],
    ["resizable ArrayBuffer", new ArrayBuffer(2, { maxByteLength: 8 })],
    ["view on a resizable buffer", [
      new Uint8Array(new ArrayBuffer(4, { maxByteLength: 8 }), 1, 2),
    ]],
    ["sparse array", sparse],
    ["array with properties", Object.assign([1, 2], { extra: true })],
    ["circular", self],
    ["shared", [shared, shared, { again: shared }]],
    ["errors", [new Error("e"), new TypeError("t"), new RangeError("r")]],
    ["boxed", [new Number(3), new String("s"), new Boolean(false), Object(5n)]],
    [
      "class instance",
      new (class A {
        x = 1;
      })(),
    ],
    ["getter", withGetter],
    ["undefined property", { a: undefined }],
    ["symbol key", { [Symbol("s")]: 1, b: 2 }],
    ["null prototype", Object.assign(Object.create(null), { a: 1 })],
    ["__proto__ key", JSON.parse('{"__proto__": {"x": 1}}')],
    ["index-like keys", { "1": 1, "4294967294": 2, "4294967295": 3, "01": 4, a: 5 }],
    ["nested KvU64", { n: new KvU64(7n), d: new Deno.KvU64(8n) }],
    ["URL", new URL("https://example.com")],
    ["Uint8Array", new Uint8Array([1, 2, 3])],
    ["Buffer", Buffer.from([1, 2])],
    ["subarray", new Uint8Array([1, 2, 3, 4]).subarray(1, 3)],
    ...Array.from({ length: 60 }, (_, i): [string, unknown] => [`random #${i}`, gen.value()]),
  ];
}

Deno.test("encodeValue() round trips equal real Deno KV's", async () => {
  using kv = await Deno.openKv(":memory:");
  for (const [name, value] of oracleValues()) {
    await kv.set(["v"], value);
    const fromKv = (await kv.get(["v"])).value;
    const ours = roundTrip(value);
    assertSameValue(ours, fromKv, name);
  }
  await kv.set(["u"], new Deno.KvU64(5n));
  const u = (await kv.get<Deno.KvU64>(["u"])).value;
  equal((roundTrip(new Deno.KvU64(5n)) as KvU64).value, u?.value);
});

/** A view whose buffer was transferred away afterwards. */
function detachedView(): unknown {
  const buffer = new ArrayBuffer(4);
  const value = [new Uint8Array(buffer)];
  structuredClone(buffer, { transfer: [buffer] });
  return value;
}

/** An ArrayBuffer transferred away, so detached. */
function detached(): ArrayBuffer {
  const buffer = new ArrayBuffer(4);
  structuredClone(buffer, { transfer: [buffer] });
  return buffer;
}

Deno.test("encodeValue() rejects exactly the values Deno KV rejects, with the same error", async () => {
  using kv = await Deno.openKv(":memory:");
  const args = (function (..._a: unknown[]) {
    return arguments;
  })(1);
  const values: unknown[] = [
    () => {},
    function named() {
      return 1;
    },
    class K {},
    { deep: { fn: () => 1 } },
    Symbol("s"),
    [Symbol()],
    new WeakMap(),
    new WeakSet(),
    new WeakRef({}),
    Promise.resolve(),
    new SharedArrayBuffer(2),
    { sab: new SharedArrayBuffer(2) },
    new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])),
    new Proxy({ a: 1 }, {}),
    [new Proxy([1], {})],
    args,
    await import("node:path"),
    [new Uint8Array(new SharedArrayBuffer(2))],
    new Int16Array(new SharedArrayBuffer(2)),
    new Map([[1, new Uint8Array(new SharedArrayBuffer(2))]]),
    new Uint8Array(new SharedArrayBuffer(2)),
    new Uint8Array(new ArrayBuffer(2, { maxByteLength: 4 })),
    detached(),
    detachedView(),
  ];
  for (const value of values) {
    let kvError: unknown;
    try {
      await kv.set(["v"], value);
    } catch (err) {
      kvError = err;
    }
    ok(kvError instanceof Error, `Deno KV accepted ${Deno.inspect(value)}`);
    const ourError = caught(() => encodeValue(value));
    equal(ourError.constructor, kvError.constructor, Deno.inspect(value));
    equal(ourError.message, kvError.message);
  }
});

Deno.test("encodeValue() turns DOMException into an Error with its message and Blob into {}, unlike Deno KV", async () => {
  using kv = await Deno.openKv(":memory:");
  // node:v8 has no host-object support for these Deno classes.
  const domException = new DOMException("gone", "AbortError");
  await kv.set(["d"], domException);
  equal((await kv.get(["d"])).value?.constructor, DOMException);
  const ours = roundTrip(domException) as Error;
  equal(ours.constructor, Error, "a plain Error");
  equal(ours.message, "gone", "the message is kept");
  equal(ours.stack, domException.stack, "the stack is kept");
  await kv.set(["b"], new Blob(["x"]));
  ok((await kv.get(["b"])).value instanceof Blob);
  deepStrictEqual(roundTrip(new Blob(["x"])), {});
});
