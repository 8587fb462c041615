/**
 * Seeded random differential test: thousands of mixed operations run against
 * real Deno KV (the oracle) and every SessionKv target at once, comparing
 * results, errors, cursors and the order relations of versionstamps.
 *
 * `SEED=123` replays a run (the seed is printed), `KV_DIFF_OPS=20000` runs
 * longer, `KV_DIFF_SELF=1` compares Deno KV with a second Deno KV (a check of
 * the test itself, useful while no SessionKv target exists).
 *
 * Cases where Deno KV and SessionKv are specified to differ are kept out:
 * nothing expires during the run (only `expireIn: 3_600_000`), and a
 * multi-mutation atomic never contains a mutation that can fail in the
 * backend (sum/min/max that can fail run as single-mutation commits, which
 * write nothing on either side; the oracle's unobservable version bump does
 * not change the order relations compared here).
 */
import { AssertionError, deepStrictEqual } from "node:assert/strict";
import { type KvTarget, kvTargets, sessionTargets } from "./_kv_targets.ts";
import {
  isU64,
  MAX_BIGINT_PART,
  NEGATIVE_NAN,
  orderedParts,
  RUNAWAY_ENTRIES,
  STAMP_RE,
  type U64Ctor,
  u64Ctor,
} from "./_kv_helpers.ts";
import { mulberry32 } from "./_helpers.ts";

const OPS = Number(Deno.env.get("KV_DIFF_OPS") ?? 3000);
const SEED = Number(Deno.env.get("SEED") ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
const MAX_U64 = 2n ** 64n - 1n;

// ---------------------------------------------------------------- randomness

class Rng {
  #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  float(): number {
    return this.#next();
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
}

// ---------------------------------------------------------------- operations

/** Stands for `kv.commitVersionstamp()` in a generated key. */
const VS = Symbol("commit versionstamp placeholder");
/** Marks a normalised cursor that contained a versionstamp. */
const VS_CURSOR = "vs-cursor:";
type KeySpec = readonly (Deno.KvKeyPart | typeof VS)[];
/** A value, or a KvU64 to be built with each side's own class. */
type ValueSpec = { u64: bigint } | { plain: unknown };
type StampSpec =
  | { kind: "current"; upper: boolean }
  | { kind: "null" }
  | { kind: "history"; at: number; upper: boolean }
  | { kind: "literal"; value: unknown };
type CheckSpec = { key: Deno.KvKey; stamp: StampSpec };
type MutationSpec =
  | { type: "set"; key: KeySpec; value: ValueSpec; expireIn?: number }
  | { type: "delete"; key: Deno.KvKey; junk?: unknown }
  | {
    type: "sum" | "min" | "max";
    key: Deno.KvKey;
    operand: bigint;
    via: "helper" | "mutate";
  };
type Op =
  | { kind: "set"; key: KeySpec; value: ValueSpec; expireIn?: number }
  | { kind: "get"; key: Deno.KvKey; consistency?: string }
  | { kind: "getMany"; keys: Deno.KvKey[]; consistency?: string }
  | { kind: "delete"; key: Deno.KvKey }
  | { kind: "list"; selector: Deno.KvListSelector; options: Deno.KvListOptions }
  | { kind: "atomic"; checks: CheckSpec[]; mutations: MutationSpec[] }
  | { kind: "sum"; key: Deno.KvKey; operand: ValueSpec };

/** First key parts: few, so keys share prefixes and lists have company. */
const FIRST: readonly Deno.KvKeyPart[] = [
  "a",
  "b",
  "",
  "é",
  0,
  -0,
  NaN,
  1n,
  true,
  new Uint8Array([1]),
];
/** Later key parts, in Deno KV order (ranges are built from two of them). */
const PARTS: readonly Deno.KvKeyPart[] = orderedParts();
const EXTRA_PARTS: readonly Deno.KvKeyPart[] = [
  new Int16Array([1, -1]) as unknown as Uint8Array,
  new Uint8Array([0, 255, 0]),
  "a\0b",
  "x".repeat(100),
  Number.EPSILON,
  -(2n ** 63n),
];
const COUNTERS = 4;
const PLAIN_NUMBERS = [
  0,
  -0,
  NaN,
  Infinity,
  -Infinity,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  Number.MAX_SAFE_INTEGER,
  Number.MIN_SAFE_INTEGER,
  1.5,
  NEGATIVE_NAN,
];
const U64S = [0n, 1n, 2n, 255n, 2n ** 32n, 2n ** 63n, MAX_U64 - 1n, MAX_U64];

class Generator {
  readonly rng: Rng;
  /** General keys written so far (reads and deletes prefer them). */
  #known: Deno.KvKey[] = [];
  /** Cursors seen in earlier listings, with the selector they came from. */
  #cursors: { selector: string; cursor: string }[] = [];

  constructor(seed: number) {
    this.rng = new Rng(seed);
  }

  rememberCursor(selector: Deno.KvListSelector, cursor: string): void {
    if (cursor === "" || cursor.startsWith(VS_CURSOR)) return;
    const entry = { selector: selectorId(selector), cursor };
    if (this.#cursors.length < 200) this.#cursors.push(entry);
    else this.#cursors[this.rng.int(200)] = entry;
  }

  #part(): Deno.KvKeyPart {
    return this.rng.chance(0.1) ? this.rng.pick(EXTRA_PARTS) : this.rng.pick(PARTS);
  }

  #newKey(): Deno.KvKey {
    const key: Deno.KvKeyPart[] = [this.rng.pick(FIRST)];
    const extra = this.rng.int(3);
    for (let i = 0; i < extra; i++) key.push(this.#part());
    if (this.#known.length < 400) this.#known.push(key);
    else this.#known[this.rng.int(400)] = key;
    return key;
  }

  /** A general key: mostly one written before. */
  #key(): Deno.KvKey {
    if (this.#known.length > 0 && this.rng.chance(0.65)) {
      return this.rng.pick(this.#known);
    }
    return this.#newKey();
  }

  #invalidKey(): Deno.KvKey {
    return this.rng.pick<Deno.KvKey>([
      [],
      ["x".repeat(2047)],
      ["a", {} as unknown as string],
      ["a", null as unknown as string],
      [2n ** 2048n],
    ]);
  }

  #counter(): Deno.KvKey {
    return ["~ctr", this.rng.int(COUNTERS)];
  }

  #typed(): Deno.KvKey {
    return [this.rng.pick(["~num", "~big"]), this.rng.int(3)];
  }

  #value(): ValueSpec {
    const r = this.rng;
    switch (r.int(14)) {
      case 0:
        return { plain: r.pick(PLAIN_NUMBERS) };
      case 1:
        return {
          plain: r.pick(["", "x", "é", "😀", "a\0b", "ж".repeat(r.int(50))]),
        };
      case 2:
        return { plain: "s".repeat(r.int(300)) };
      case 3:
        return { plain: r.pick([true, false, null, undefined]) };
      case 4:
        return {
          plain: r.pick([0n, -1n, 2n ** 100n, -(2n ** 70n), MAX_BIGINT_PART]),
        };
      case 5:
        return { plain: new Uint8Array(r.int(64)).map(() => r.int(256)) };
      case 6:
        return { u64: r.pick(U64S) };
      case 7:
        return {
          plain: {
            n: r.int(100),
            s: "v".repeat(r.int(10)),
            list: [1, "two", null, [3n]],
          },
        };
      case 8:
        return {
          plain: new Map<unknown, unknown>([[r.int(5), "m"], [
            "k",
            new Set([1, 2]),
          ]]),
        };
      case 9:
        return {
          plain: [
            new Date(r.int(2 ** 40)),
            /re+g/i,
            new Float64Array([r.float()]),
          ],
        };
      case 10:
        // A large value near the 64 KiB limit, sometimes just over it.
        return r.chance(0.5)
          ? { plain: new Uint8Array(r.pick([65535, 65536, 65537])) }
          : { plain: "L".repeat(r.pick([65529, 65530, 65531])) };
      case 11:
        return { plain: r.float() * 1e6 };
      case 12:
        return { plain: new Int32Array([r.int(1000), -5]) };
      default:
        return { plain: { nested: { deeper: { k: r.pick(PLAIN_NUMBERS) } } } };
    }
  }

  #consistency(): string | undefined {
    if (!this.rng.chance(0.2)) return undefined;
    return this.rng.chance(0.95) ? this.rng.pick(["strong", "eventual"]) : "bogus";
  }

  #stamp(): StampSpec {
    const r = this.rng;
    const roll = r.float();
    if (roll < 0.45) return { kind: "current", upper: r.chance(0.15) };
    if (roll < 0.65) return { kind: "null" };
    if (roll < 0.85) {
      return { kind: "history", at: r.float(), upper: r.chance(0.2) };
    }
    if (roll < 0.97) return { kind: "literal", value: "00".repeat(10) };
    return { kind: "literal", value: r.pick(["zz", "", "aa".repeat(11), 7]) };
  }

  #selector(): Deno.KvListSelector {
    const r = this.rng;
    let base: Deno.KvKey;
    const roll = r.float();
    if (roll < 0.1) base = [];
    else if (roll < 0.5) base = [r.pick(FIRST)];
    else if (roll < 0.75 && this.#known.length > 0) {
      const k = r.pick(this.#known);
      base = k.slice(0, r.int(k.length));
    } else base = [r.pick(FIRST), this.#part()];
    const i = r.int(PARTS.length);
    const j = r.int(PARTS.length);
    const [lo, hi] = i <= j ? [i, j] : [j, i];
    const child = (n: number) => [...base, PARTS[n]!];
    switch (r.int(5)) {
      case 0:
      case 1:
        return { prefix: base };
      case 2:
        return { prefix: base, start: r.chance(0.04) ? base : child(lo) };
      case 3:
        return { prefix: base, end: r.chance(0.04) ? base : child(hi) };
      default: {
        const swapped = r.chance(0.06);
        const start = r.chance(0.15) ? base : child(swapped ? hi : lo);
        return { start, end: child(swapped ? lo : hi) };
      }
    }
  }

  #listOptions(selector: Deno.KvListSelector): Deno.KvListOptions {
    const r = this.rng;
    const options: Record<string, unknown> = {};
    if (r.chance(0.55)) options.limit = 1 + r.int(12);
    if (r.chance(0.5)) options.reverse = true;
    if (r.chance(0.3)) options.batchSize = 1 + r.int(5);
    if (r.chance(0.03)) options.batchSize = r.pick([500, 1000, 1001]);
    const consistency = this.#consistency();
    if (consistency !== undefined) options.consistency = consistency;
    if (r.chance(0.35) && this.#cursors.length > 0) {
      const same = this.#cursors.filter((c) => c.selector === selectorId(selector));
      options.cursor = same.length > 0 && r.chance(0.8)
        ? r.pick(same).cursor
        : r.pick(this.#cursors).cursor;
    }
    if (r.chance(0.02)) options.cursor = r.pick(["", "!!!", "YgA", "AQD/AA=="]);
    if (r.chance(0.01)) options.limit = r.pick([0, -1, 1.5]);
    if (r.chance(0.01)) options.batchSize = r.pick([0, 2.5]);
    return options as Deno.KvListOptions;
  }

  #mutation(): MutationSpec {
    const r = this.rng;
    const roll = r.float();
    if (roll < 0.3) {
      const m: MutationSpec = {
        type: "set",
        key: this.#key(),
        value: this.#value(),
      };
      if (r.chance(0.1)) m.expireIn = 3_600_000;
      return m;
    }
    if (roll < 0.45) return { type: "delete", key: this.#key() };
    if (roll < 0.75) {
      const type = r.pick(["sum", "min", "max"] as const);
      return {
        type,
        key: this.#counter(),
        operand: r.pick(U64S),
        via: r.pick(["helper", "mutate"]),
      };
    }
    if (roll < 0.82) {
      return {
        type: "set",
        key: this.#counter(),
        value: { u64: r.pick(U64S) },
      };
    }
    if (roll < 0.87) return { type: "delete", key: this.#counter() };
    if (roll < 0.92) {
      return { type: "set", key: ["~vs", VS], value: { plain: r.int(100) } };
    }
    if (roll < 0.97) {
      return { type: "set", key: this.#newKey(), value: this.#value() };
    }
    // Rare invalid mutations: the whole commit must fail the same way.
    if (r.chance(0.5)) {
      return { type: "set", key: this.#invalidKey(), value: { plain: 1 } };
    }
    return { type: "delete", key: this.#key(), junk: "truthy" };
  }

  next(): Op {
    const r = this.rng;
    const roll = r.float();
    if (roll < 0.24) {
      const op: Op = { kind: "set", key: this.#key(), value: this.#value() };
      if (r.chance(0.1)) op.expireIn = 3_600_000;
      if (r.chance(0.02)) op.expireIn = r.pick([-1, 1.5]);
      return op;
    }
    if (roll < 0.27) {
      return { kind: "set", key: this.#typed(), value: this.#value() };
    }
    if (roll < 0.29) {
      return { kind: "set", key: this.#invalidKey(), value: this.#value() };
    }
    if (roll < 0.4) {
      const key = r.chance(0.9)
        ? this.#key()
        : r.chance(0.5)
        ? this.#counter()
        : this.#invalidKey();
      const consistency = this.#consistency();
      return consistency === undefined ? { kind: "get", key } : { kind: "get", key, consistency };
    }
    if (roll < 0.47) {
      const n = r.chance(0.03) ? 11 : r.int(11);
      const keys = Array.from(
        { length: n },
        () => r.chance(0.85) ? this.#key() : this.#counter(),
      );
      const consistency = this.#consistency();
      return consistency === undefined
        ? { kind: "getMany", keys }
        : { kind: "getMany", keys, consistency };
    }
    if (roll < 0.54) {
      return {
        kind: "delete",
        key: r.chance(0.97) ? this.#key() : this.#invalidKey(),
      };
    }
    if (roll < 0.74) {
      const selector = this.#selector();
      return { kind: "list", selector, options: this.#listOptions(selector) };
    }
    if (roll < 0.95) {
      const checks = Array.from({ length: r.pick([0, 0, 1, 1, 2, 3]) }, () => ({
        key: r.chance(0.8) ? this.#key() : this.#counter(),
        stamp: this.#stamp(),
      }));
      const mutations = Array.from(
        { length: r.int(7) },
        () => this.#mutation(),
      );
      return { kind: "atomic", checks, mutations };
    }
    // A single sum that may fail in the backend: number, bigint or KvU64
    // operand on the typed keys. Counters only ever get KvU64 operands, so
    // they never hold anything else (multi-mutation atomics rely on it).
    if (r.chance(0.2)) {
      return {
        kind: "sum",
        key: this.#counter(),
        operand: { u64: r.pick(U64S) },
      };
    }
    const operand: ValueSpec = r.pick<ValueSpec>([
      { plain: r.int(10) },
      { plain: r.float() },
      { plain: BigInt(r.int(1000)) },
      { plain: -(2n ** 80n) },
      { u64: r.pick(U64S) },
      { plain: "x" },
    ]);
    return { kind: "sum", key: this.#typed(), operand };
  }
}

// ---------------------------------------------------------------- sides

/** One KV under comparison, with what it has observed so far. */
interface Side {
  id: string;
  kv: Deno.Kv;
  U64: U64Ctor;
  /** Every versionstamp observed, in observation order (parallel across sides). */
  history: string[];
  /** The last versionstamp seen per key id (null: seen missing or deleted). */
  current: Map<string, string | null>;
}

function partId(part: unknown): string {
  switch (typeof part) {
    case "string":
      return `s${JSON.stringify(part)}`;
    case "bigint":
      return `b${part}`;
    case "boolean":
      return `t${part}`;
    case "number": {
      const bytes = new Uint8Array(new Float64Array([part]).buffer);
      return `n${Array.from(bytes).join(".")}`;
    }
    case "symbol":
      return "vs";
  }
  if (ArrayBuffer.isView(part)) {
    return `u${
      Array.from(new Uint8Array(part.buffer, part.byteOffset, part.byteLength))
        .join(".")
    }`;
  }
  return `?${String(part)}`;
}

function keyId(key: readonly unknown[]): string {
  return Array.isArray(key) ? key.map(partId).join("|") : `?${String(key)}`;
}

function selectorId(selector: Deno.KvListSelector): string {
  const s = selector as {
    prefix?: Deno.KvKey;
    start?: Deno.KvKey;
    end?: Deno.KvKey;
  };
  return `${s.prefix ? keyId(s.prefix) : "-"}/${s.start ? keyId(s.start) : "-"}/${
    s.end ? keyId(s.end) : "-"
  }`;
}

type ErrorInfo = { class: string; message: string };
function errorInfo(error: unknown): ErrorInfo {
  return error instanceof Error
    ? { class: error.constructor.name, message: error.message }
    : { class: typeof error, message: String(error) };
}

/**
 * Turns one side's raw result into a comparable form: versionstamps become
 * "<vs>" (their order is compared separately), KvU64s of either class become
 * `{ u64 }`. The stamps met are collected in `stamps`, in traversal order.
 */
class Normalizer {
  readonly stamps: string[] = [];
  constructor(readonly side: Side) {}

  stamp(stamp: string | null): string | null {
    if (stamp === null) return null;
    if (!STAMP_RE.test(stamp)) {
      throw new AssertionError({
        message: `[${this.side.id}] bad versionstamp ${stamp}`,
      });
    }
    this.stamps.push(stamp);
    return "<vs>";
  }

  key(key: Deno.KvKey): unknown[] {
    if (key[0] === "~vs" && typeof key[1] === "string") {
      return ["~vs", this.stamp(key[1])];
    }
    return [...key];
  }

  /**
   * A cursor holds key bytes, so one after a `["~vs", <versionstamp>]` key
   * differs per database: its stamp is replaced like any other.
   */
  cursor(cursor: string): string {
    // A string key part: 0x02, the 20 hex digits, 0x00.
    // deno-lint-ignore no-control-regex
    const stampPart = /\x02([0-9a-f]{20})\x00/g;
    let binary: string;
    try {
      binary = atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
    } catch {
      return cursor;
    }
    if (!stampPart.test(binary)) return cursor;
    const masked = binary.replace(
      stampPart,
      (_, stamp: string) => `\x02${this.stamp(stamp)}\x00`,
    );
    return `${VS_CURSOR}${btoa(masked)}`;
  }

  value(value: unknown): unknown {
    return isU64(value) ? { u64: value.value } : value;
  }

  entry(entry: Deno.KvEntryMaybe<unknown>): unknown {
    this.side.current.set(keyId(entry.key), entry.versionstamp);
    return {
      key: this.key(entry.key),
      value: this.value(entry.value),
      versionstamp: this.stamp(entry.versionstamp),
    };
  }

  commit(result: Deno.KvCommitResult | Deno.KvCommitError): unknown {
    return result.ok ? { ok: true, versionstamp: this.stamp(result.versionstamp) } : { ...result };
  }
}

/** The outcome of calling `fn`: a synchronous throw, a rejection or a value. */
async function outcome<T>(
  fn: () => Promise<T> | T,
  done: (value: T) => unknown,
): Promise<unknown> {
  let promise: Promise<T> | T;
  try {
    promise = fn();
  } catch (error) {
    return { sync: errorInfo(error) };
  }
  try {
    return { value: done(await promise) };
  } catch (error) {
    return { rejected: errorInfo(error) };
  }
}

function materialiseKey(side: Side, key: KeySpec): Deno.KvKey {
  return key.map((p) => p === VS ? side.kv.commitVersionstamp() as unknown as Deno.KvKeyPart : p);
}

function materialiseValue(side: Side, value: ValueSpec): unknown {
  return "u64" in value ? new side.U64(value.u64) : value.plain;
}

function resolveStamp(side: Side, key: Deno.KvKey, spec: StampSpec): unknown {
  const upper = (s: string | null | undefined, yes: boolean) =>
    s && yes ? s.toUpperCase() : s ?? null;
  switch (spec.kind) {
    case "current":
      return upper(side.current.get(keyId(key)), spec.upper);
    case "null":
      return null;
    case "history":
      return upper(
        side.history[Math.floor(spec.at * side.history.length)],
        spec.upper,
      );
    case "literal":
      return spec.value;
  }
}

/** After a successful commit: what each written key's versionstamp now is. */
function recordWrites(
  side: Side,
  keys: { key: KeySpec; deleted: boolean }[],
  stamp: string,
): void {
  for (const { key, deleted } of keys) {
    if (key.includes(VS)) continue;
    side.current.set(keyId(key), deleted ? null : stamp);
  }
}

async function run(side: Side, op: Op, norm: Normalizer): Promise<unknown> {
  const kv = side.kv;
  switch (op.kind) {
    case "set": {
      const options = op.expireIn === undefined ? undefined : { expireIn: op.expireIn };
      return await outcome(
        () =>
          kv.set(
            materialiseKey(side, op.key),
            materialiseValue(side, op.value),
            options,
          ),
        (r) => {
          recordWrites(side, [{ key: op.key, deleted: false }], r.versionstamp);
          return norm.commit(r);
        },
      );
    }
    case "get": {
      const options = op.consistency === undefined
        ? undefined
        : { consistency: op.consistency as Deno.KvConsistencyLevel };
      return await outcome(() => kv.get(op.key, options), (e) => norm.entry(e));
    }
    case "getMany": {
      const options = op.consistency === undefined
        ? undefined
        : { consistency: op.consistency as Deno.KvConsistencyLevel };
      return await outcome(
        () => kv.getMany(op.keys, options),
        (es) => es.map((e) => norm.entry(e)),
      );
    }
    case "delete":
      return await outcome(() => kv.delete(op.key), (r) => {
        side.current.set(keyId(op.key), null);
        return r;
      });
    case "list":
      return await runList(side, op, norm);
    case "atomic":
      return await runAtomic(side, op, norm);
    case "sum":
      return await outcome(
        () =>
          kv.atomic().mutate(
            {
              type: "sum",
              key: op.key,
              value: materialiseValue(side, op.operand),
            } as Deno.KvMutation,
          )
            .commit(),
        (r) => {
          if (r.ok) {
            recordWrites(
              side,
              [{ key: op.key, deleted: false }],
              r.versionstamp,
            );
          }
          return norm.commit(r);
        },
      );
  }
}

async function runList(
  side: Side,
  op: Extract<Op, { kind: "list" }>,
  norm: Normalizer,
): Promise<unknown> {
  let iter: Deno.KvListIterator<unknown>;
  try {
    iter = side.kv.list(op.selector, op.options);
  } catch (error) {
    return { sync: errorInfo(error) };
  }
  const steps: unknown[] = [];
  const before = op.options.cursor ? iter.cursor : undefined;
  try {
    for (;;) {
      const r = await iter.next();
      if (r.done) break;
      steps.push({
        entry: norm.entry(r.value),
        cursor: norm.cursor(iter.cursor),
      });
      if (steps.length > RUNAWAY_ENTRIES) {
        return { before, steps: steps.length, runaway: true };
      }
    }
    return { before, steps, cursor: norm.cursor(iter.cursor) };
  } catch (error) {
    return { before, steps, rejected: errorInfo(error) };
  }
}

async function runAtomic(
  side: Side,
  op: Extract<Op, { kind: "atomic" }>,
  norm: Normalizer,
): Promise<unknown> {
  let atomic: Deno.AtomicOperation;
  try {
    atomic = side.kv.atomic();
    for (const check of op.checks) {
      atomic.check(
        {
          key: check.key,
          versionstamp: resolveStamp(side, check.key, check.stamp),
        } as Deno.AtomicCheck,
      );
    }
    for (const m of op.mutations) {
      switch (m.type) {
        case "set":
          atomic.set(
            materialiseKey(side, m.key),
            materialiseValue(side, m.value),
            ...(m.expireIn === undefined ? [] : [{ expireIn: m.expireIn }]),
          );
          break;
        case "delete":
          if (m.junk === undefined) atomic.delete(m.key);
          else {atomic.mutate(
              {
                type: "delete",
                key: m.key,
                value: m.junk,
              } as unknown as Deno.KvMutation,
            );}
          break;
        default:
          if (m.via === "helper") atomic[m.type](m.key, m.operand);
          else {atomic.mutate({
              type: m.type,
              key: m.key,
              value: new side.U64(m.operand),
            });}
      }
    }
  } catch (error) {
    return { sync: errorInfo(error) };
  }
  return await outcome(() => atomic.commit(), (r) => {
    if (r.ok) {
      recordWrites(
        side,
        op.mutations.map((m) => ({ key: m.key, deleted: m.type === "delete" })),
        r.versionstamp,
      );
    }
    return norm.commit(r);
  });
}

// ---------------------------------------------------------------- versionstamp order

/**
 * Pairs the oracle's versionstamps with another side's and checks that the
 * pairing is an order-preserving bijection: equal stays equal, less stays
 * less. Values differ per database, relations may not.
 */
class StampOrder {
  #toSide = new Map<string, string>();
  #toOracle = new Map<string, string>();
  #sorted: string[] = [];

  /** @returns a description of the violation, or `undefined`. */
  pair(oracle: string, side: string): string | undefined {
    const known = this.#toSide.get(oracle);
    if (known !== undefined) {
      return known === side
        ? undefined
        : `oracle stamp ${oracle} was paired with ${known}, now with ${side}`;
    }
    const other = this.#toOracle.get(side);
    if (other !== undefined) {
      return `stamp ${side} was paired with oracle ${other}, now with ${oracle}`;
    }
    let lo = 0;
    let hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#sorted[mid]! < oracle) lo = mid + 1;
      else hi = mid;
    }
    const below = this.#sorted[lo - 1];
    const above = this.#sorted[lo];
    if (below !== undefined && !(this.#toSide.get(below)! < side)) {
      return `oracle ${below} < ${oracle} but ${this.#toSide.get(below)} >= ${side}`;
    }
    if (above !== undefined && !(side < this.#toSide.get(above)!)) {
      return `oracle ${oracle} < ${above} but ${side} >= ${this.#toSide.get(above)}`;
    }
    this.#sorted.splice(lo, 0, oracle);
    this.#toSide.set(oracle, side);
    this.#toOracle.set(side, oracle);
    return undefined;
  }

  get size(): number {
    return this.#sorted.length;
  }
}

// ---------------------------------------------------------------- the test

function describe(op: Op): string {
  return Deno.inspect(op, {
    depth: 6,
    colors: false,
    strAbbreviateSize: 80,
    iterableLimit: 12,
  });
}

const openOracle = (): Promise<{ kv: Deno.Kv } & AsyncDisposable> =>
  (kvTargets.find((t) => t.oracle) ?? {
    open: async () => {
      const kv = await Deno.openKv(":memory:");
      return { kv, [Symbol.asyncDispose]: () => Promise.resolve(kv.close()) };
    },
  }).open();

const twin: KvTarget = {
  id: "denokv-twin",
  oracle: true,
  async open() {
    const kv = await Deno.openKv(":memory:");
    return { kv, [Symbol.asyncDispose]: () => Promise.resolve(kv.close()) };
  },
};

const others = sessionTargets.length > 0
  ? sessionTargets
  : Deno.env.get("KV_DIFF_SELF") === "1"
  ? [twin]
  : [];

if (others.length === 0) {
  console.log(
    "kv_differential_test: no SessionKv target selected, so the differential test is skipped " +
      "(KV_DIFF_SELF=1 compares Deno KV with itself instead)",
  );
}

Deno.test({
  name: `[${
    ["denokv", ...others.map((t) => t.id)].join(",")
  }] SessionKv agrees with Deno KV on ${OPS} seeded random operations`,
  ignore: others.length === 0,
  async fn() {
    console.log(`kv differential: SEED=${SEED} KV_DIFF_OPS=${OPS}`);
    await using oracleKv = await openOracle();
    await using stack = new AsyncDisposableStack();
    const oracle: Side = {
      id: "denokv",
      kv: oracleKv.kv,
      U64: Deno.KvU64,
      history: [],
      current: new Map(),
    };
    const sides: { side: Side; order: StampOrder }[] = [];
    for (const target of others) {
      const opened = stack.use(await target.open());
      sides.push({
        side: {
          id: target.id,
          kv: opened.kv,
          U64: await u64Ctor(target),
          history: [],
          current: new Map(),
        },
        order: new StampOrder(),
      });
    }
    const gen = new Generator(SEED);
    const tally = new Map<string, number>();
    for (let i = 0; i < OPS; i++) {
      const op = gen.next();
      const where = () => `SEED=${SEED} op #${i}: ${describe(op)}`;
      const oracleNorm = new Normalizer(oracle);
      const expected = await run(oracle, op, oracleNorm);
      for (const { side, order } of sides) {
        const norm = new Normalizer(side);
        const actual = await run(side, op, norm);
        try {
          deepStrictEqual(actual, expected);
        } catch (error) {
          throw new AssertionError({
            message: `[${side.id}] differs from Deno KV at ${where()}\n${(error as Error).message}`,
          });
        }
        deepStrictEqual(norm.stamps.length, oracleNorm.stamps.length);
        for (const [k, stamp] of oracleNorm.stamps.entries()) {
          const problem = order.pair(stamp, norm.stamps[k]!);
          if (problem) {
            throw new AssertionError({
              message: `[${side.id}] versionstamp order differs at ${where()}: ${problem}`,
            });
          }
        }
        side.history.push(...norm.stamps);
      }
      oracle.history.push(...oracleNorm.stamps);
      if (op.kind === "list") {
        const result = expected as {
          steps?: { cursor: string }[];
          cursor?: string;
        };
        if (result.cursor !== undefined) {
          gen.rememberCursor(op.selector, result.cursor);
        }
        if (result.steps && result.steps.length > 0) {
          gen.rememberCursor(op.selector, gen.rng.pick(result.steps).cursor);
        }
      }
      const e = expected as {
        sync?: unknown;
        rejected?: unknown;
        value?: { ok?: boolean };
      };
      const status = e.sync
        ? "sync-error"
        : e.rejected
        ? "rejected"
        : e.value?.ok === false
        ? "check-failed"
        : "ok";
      const label = `${op.kind}:${status}`;
      tally.set(label, (tally.get(label) ?? 0) + 1);
    }
    const summary = [...tally].sort().map(([k, v]) => `${k}=${v}`).join(" ");
    console.log(
      `kv differential: ${summary}; distinct versionstamps ${sides[0]?.order.size}`,
    );
  },
});
