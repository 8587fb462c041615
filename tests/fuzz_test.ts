/**
 * Hostile input: thousands of seeded random and malformed inputs to every
 * entry point. Each call must either work or fail with the error kinds Deno
 * KV uses (`TypeError`, `RangeError`, the plain `Error` of list's
 * `limit`/`batchSize`, `DataCloneError` for values, or the caller's own error
 * thrown from a getter); the KV calls run against real Deno KV too and must
 * end the same way (success, sync throw or rejection, and the error class).
 * Ids never name a path outside `root`, forged cursors never read outside
 * their selector, no call hangs, and every file passes `integrity_check`.
 *
 * `SESSIONKV_FUZZ_SEED` replays a run (the seed is printed on failure);
 * `SESSIONKV_FUZZ_SCALE=4` multiplies the number of inputs;
 * `SESSIONKV_FUZZ_VERBOSE=1` lists every finding, not the first 12.
 */
import { AssertionError, deepEqual, equal, ok } from "node:assert/strict";
import { join, sep } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { KvU64, SessionStore } from "../mod.ts";
import { compareBytes, encodeKey } from "../src/codec/key_codec.ts";
import { testDrivers } from "./_drivers.ts";
import { withTempDir } from "./_helpers.ts";

const SEED = Number(Deno.env.get("SESSIONKV_FUZZ_SEED") ?? Date.now() % 2 ** 31) >>> 0;
const SCALE = Number(Deno.env.get("SESSIONKV_FUZZ_SCALE") ?? 1);

// ------------------------------------------------------------------ randomness

class Rng {
  #a: number;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  /** mulberry32 */
  float(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
}

/** murmur3's finalizer: spreads every input bit over the output. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Seed of the `i`-th input of a phase: inputs replay one by one. */
const seedOf = (phase: number, i: number) => mix(mix(SEED + Math.imul(phase + 1, 0x9e3779b1)) + i);

// ------------------------------------------------------------------ outcomes

/** Thrown by the getters and proxies of hostile inputs: the caller's own error. */
class FuzzTrap extends Error {
  override name = "FuzzTrap";
}

function errorName(error: unknown): string {
  if (error instanceof DOMException) return `DOMException(${error.name})`;
  if (error instanceof Error) return error.constructor.name;
  return `non-Error ${typeof error}`;
}

/** Whether an error is of a kind hostile input may legitimately produce. */
function allowedError(error: unknown): boolean {
  if (error instanceof FuzzTrap || error instanceof TypeError || error instanceof RangeError) {
    return true;
  }
  if (error instanceof DOMException) return error.name === "DataCloneError";
  // Deno KV's list() reports a bad limit or batchSize with a plain Error.
  return error instanceof Error && error.constructor === Error &&
    /limit|batchSize|Too many entries/i.test(error.message);
}

interface Outcome {
  /** "ok", "throw <Class>" (synchronous) or "reject <Class>". */
  sig: string;
  value?: unknown;
  error?: unknown;
}

const HANG_MS = 3000;

/** Runs `fn`, telling a synchronous throw from a rejection; a hang is an error. */
async function outcome(fn: () => unknown): Promise<Outcome> {
  let result: unknown;
  try {
    result = fn();
  } catch (error) {
    return { sig: `throw ${errorName(error)}`, error };
  }
  if (!(result instanceof Promise)) return { sig: "ok", value: result };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`HANG: no result after ${HANG_MS} ms`)), HANG_MS);
  });
  try {
    return { sig: "ok", value: await Promise.race([result, hang]) };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("HANG")) throw error;
    return { sig: `reject ${errorName(error)}`, error };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Whether SessionKv ended a call as Deno KV did. A caller's own error thrown
 * by a hostile getter or proxy counts as a TypeError: which of two bad inputs
 * is noticed first, and whether a proxy is refused outright (Deno KV's
 * serde_v8 refuses every Proxy) or read through, is not a contract. Nor is
 * the moment of a builder error: a synchronous throw and a rejection of the
 * commit both count (sync/async parity is kv_differential_test's subject);
 * they are counted and printed.
 */
function sameOutcome(actual: Outcome, expected: Outcome): boolean {
  const norm = (sig: string) =>
    sig.replace("FuzzTrap", "TypeError").replace(/^(throw|reject) /, "");
  return norm(actual.sig) === norm(expected.sig);
}

function differ(actual: Outcome, expected: Outcome): string {
  const text = (o: Outcome) =>
    o.sig === "ok" ? "ok" : `${o.sig} ${JSON.stringify((o.error as Error)?.message)}`;
  return `SessionKv ${text(actual)}, Deno KV ${text(expected)}`;
}

/** Collects failures, reports the first few with how to replay them. */
class Findings {
  readonly items: string[] = [];
  add(what: string): void {
    this.items.push(what);
  }
  assertNone(title: string): void {
    if (this.items.length === 0) return;
    const all = Deno.env.get("SESSIONKV_FUZZ_VERBOSE") === "1";
    const shown = this.items.slice(0, all ? Infinity : 12).join("\n  ");
    throw new AssertionError({
      message: `${title}: ${this.items.length} finding(s), SESSIONKV_FUZZ_SEED=${SEED}\n  ${shown}`,
    });
  }
}

function show(value: unknown): string {
  try {
    const text = Deno.inspect(value, { depth: 3, iterableLimit: 6, strAbbreviateSize: 40 });
    return text.length > 300 ? `${text.slice(0, 300)}…` : text;
  } catch {
    return "<uninspectable>";
  }
}

// ------------------------------------------------------------------ generators

/** What differs between Deno KV and SessionKv in the inputs: the versionstamp symbol, KvU64. */
interface Ctx {
  stamp: symbol;
  u64: (n: bigint) => unknown;
}

const STRING_ATOMS = ["", "a", "b", "Z", "\0", "\u{10ffff}", "é", "😀", "\ud800", "\udc00", "~"];

function text(r: Rng, maxAtoms = 6): string {
  let s = "";
  for (let n = r.int(maxAtoms + 1); n > 0; n--) s += r.pick(STRING_ATOMS);
  return s;
}

function trapProxy(): unknown {
  return new Proxy({}, {
    get() {
      throw new FuzzTrap("get trap");
    },
    ownKeys() {
      throw new FuzzTrap("ownKeys trap");
    },
    getOwnPropertyDescriptor() {
      throw new FuzzTrap("descriptor trap");
    },
  });
}

function validPart(r: Rng): unknown {
  switch (r.int(8)) {
    case 0:
      return text(r);
    case 1:
      return r.pick([0, -0, 1, -1, 1.5, NaN, -NaN, Infinity, -Infinity, Number.MAX_VALUE, 5e-324]);
    case 2:
      return r.pick([0n, -1n, 1n, 2n ** 64n, -(2n ** 64n), 2n ** 2040n - 1n, -(2n ** 2040n) + 1n]);
    case 3:
      return r.chance(0.5);
    case 4:
      return r.bytes(r.int(5));
    case 5:
      return r.pick([
        new Int16Array([1, -1]),
        new DataView(new ArrayBuffer(3)),
        new Float64Array(1),
      ]);
    case 6:
      return "x".repeat(r.pick([100, 1000, 2047, 2100, 5000]));
    default:
      return r.int(100);
  }
}

function hostilePart(r: Rng, ctx: Ctx): unknown {
  switch (r.int(16)) {
    case 0:
      return undefined;
    case 1:
      return null;
    case 2:
      return {};
    case 3:
      return [];
    case 4:
      return Symbol("s");
    case 5:
      return () => 1;
    case 6:
      return new Date(0);
    case 7:
      return new ArrayBuffer(2);
    case 8:
      return new Map([["a", 1]]);
    case 9:
      return new String("a");
    case 10:
      return Object(1n);
    case 11:
      return { toString: () => "x", valueOf: () => 1 };
    case 12:
      return trapProxy();
    case 13:
      return ctx.stamp; // Valid only as the last part of a set key.
    case 14:
      return 2n ** 2048n; // Too large for a key part.
    default:
      return ctx.u64(1n);
  }
}

function key(r: Rng, ctx: Ctx): unknown {
  switch (r.int(12)) {
    case 0:
      return r.pick(["a", 1, null, undefined, {}, { length: 1, 0: "a" }, new Set(["a"])]);
    case 1: {
      const sparse: unknown[] = [];
      sparse[1] = "a";
      return r.chance(0.5) ? sparse : new Array(2);
    }
    case 2:
      return new Proxy(["a", "b"], {
        get(target, prop) {
          if (prop === "1") throw new FuzzTrap("index trap");
          return Reflect.get(target, prop);
        },
      });
    case 3:
      return Array.from({ length: r.pick([40, 200]) }, () => r.int(10));
    default: {
      const parts: unknown[] = [];
      for (let n = r.int(5); n > 0; n--) {
        parts.push(r.chance(0.85) ? validPart(r) : hostilePart(r, ctx));
      }
      if (r.chance(0.1)) parts.push(ctx.stamp);
      return parts;
    }
  }
}

function value(r: Rng, ctx: Ctx, depth = 0): unknown {
  switch (r.int(depth > 2 ? 10 : 24)) {
    case 0:
      return text(r, 10);
    case 1:
      return r.pick([0, -0, NaN, Infinity, 1.5, -1]);
    case 2:
      return r.pick([0n, -(2n ** 200n), 2n ** 64n]);
    case 3:
      return r.pick([true, false, null, undefined]);
    case 4:
      return r.bytes(r.int(20));
    case 5:
      return r.pick([new Float32Array(3), new BigInt64Array(2), new ArrayBuffer(4)]);
    case 6:
      return new Date(r.pick([0, -1, 8.64e15, NaN]));
    case 7:
      return /re+/gi;
    case 8:
      return ctx.u64(r.pick([0n, 1n, 2n ** 64n - 1n]));
    case 9:
      return r.pick([new KvU64(3n), new Deno.KvU64(4n)]);
    case 10:
      return () => 1;
    case 11:
      return Symbol("v");
    case 12:
      return new WeakMap();
    case 13:
      return Promise.resolve(1);
    case 14:
      return trapProxy();
    case 15:
      return {
        get boom() {
          throw new FuzzTrap("getter");
        },
      };
    case 16:
      return "v".repeat(r.pick([65_000, 65_536, 70_000]));
    case 17: {
      let nested: unknown = 1;
      for (let i = r.pick([10, 1000, 5000]); i > 0; i--) nested = [nested];
      return nested;
    }
    case 18: {
      const cyclic: Record<string, unknown> = { a: 1 };
      cyclic.self = cyclic;
      return cyclic;
    }
    case 19:
      return new Map([[value(r, ctx, depth + 1), value(r, ctx, depth + 1)]]);
    case 20:
      return new Set([value(r, ctx, depth + 1)]);
    case 21:
      return r.pick([new TypeError("t"), new RangeError("r"), new Error("e", { cause: 1 })]);
    case 22:
      return Array.from({ length: r.int(4) }, () => value(r, ctx, depth + 1));
    default: {
      const obj: Record<string, unknown> = {};
      for (let n = r.int(4); n > 0; n--) obj[text(r, 2)] = value(r, ctx, depth + 1);
      return obj;
    }
  }
}

function stamp(r: Rng): unknown {
  return r.pick([
    null,
    undefined,
    "00000000000000000000",
    "0000000000000000000a",
    "0000000000000000000A",
    "000000000000000000001",
    "0000000000000000000",
    "zzzzzzzzzzzzzzzzzzzz",
    "ffffffffffffffffffff",
    "",
    1,
    {},
    ["0"],
  ]);
}

function expireIn(r: Rng): unknown {
  return r.pick([undefined, 0, 1, 3_600_000, -1, 1.5, NaN, Infinity, "10", 2 ** 53, null]);
}

function enqueueOptions(r: Rng, ctx: Ctx): unknown {
  if (r.chance(0.3)) return r.pick([undefined, null, 1, "x"]);
  const options: Record<string, unknown> = {};
  if (r.chance(0.5)) options.delay = r.pick([0, 10, -1, 1.5, NaN, 30 * 86_400_000 + 1, "5"]);
  if (r.chance(0.4)) {
    options.keysIfUndelivered = r.chance(0.2)
      ? "x"
      : Array.from({ length: r.int(3) }, () => key(r, ctx));
  }
  if (r.chance(0.4)) {
    options.backoffSchedule = r.chance(0.2)
      ? 5
      : Array.from({ length: r.int(7) }, () => r.pick([0, 100, -1, 1.5, 3_600_001, NaN]));
  }
  return options;
}

type Op = (kv: Deno.Kv) => unknown;

/** One random call on a KV, built from `r`; the same seed builds the same call. */
function kvOp(r: Rng, ctx: Ctx): { what: string; run: Op; readBack?: unknown } {
  switch (r.int(11)) {
    case 0: {
      const k = key(r, ctx);
      const consistency = r.pick([undefined, "strong", "eventual", "weak", 1]);
      return {
        what: `get(${show(k)}, ${show(consistency)})`,
        run: (kv) =>
          kv.get(k as Deno.KvKey, { consistency } as { consistency?: Deno.KvConsistencyLevel }),
      };
    }
    case 1: {
      const keys = r.chance(0.1)
        ? r.pick([null, "a", {}])
        : Array.from({ length: r.pick([0, 1, 3, 10, 11]) }, () => key(r, ctx));
      return { what: `getMany(${show(keys)})`, run: (kv) => kv.getMany(keys as Deno.KvKey[]) };
    }
    case 2:
    case 3: {
      const k = key(r, ctx);
      const v = value(r, ctx);
      const options = r.chance(0.3) ? { expireIn: expireIn(r) } : r.pick([undefined, null]);
      return {
        what: `set(${show(k)}, ${show(v)}, ${show(options)})`,
        run: (kv) => kv.set(k as Deno.KvKey, v, options as { expireIn?: number }),
        // An expiring key may be gone already (SessionKv hides it at once, by design).
        ...(options ? {} : { readBack: k }),
      };
    }
    case 4: {
      const k = key(r, ctx);
      return { what: `delete(${show(k)})`, run: (kv) => kv.delete(k as Deno.KvKey) };
    }
    case 5: {
      const v = value(r, ctx);
      const options = enqueueOptions(r, ctx);
      return {
        what: `enqueue(${show(v)}, ${show(options)})`,
        run: (kv) => kv.enqueue(v, options as { delay?: number }),
      };
    }
    case 6: {
      const keys = Array.from({ length: r.pick([0, 1, 2, 11]) }, () => key(r, ctx));
      return {
        what: `watch(${show(keys)})`,
        run: (kv) => {
          const stream = kv.watch(keys as Deno.KvKey[]);
          return stream.cancel();
        },
      };
    }
    default: {
      // An atomic operation of random steps, then commit.
      const steps: { what: string; apply(op: Deno.AtomicOperation): void }[] = [];
      for (let n = 1 + r.int(4); n > 0; n--) {
        const k = key(r, ctx);
        switch (r.int(8)) {
          case 0: {
            const checks = Array.from({ length: r.pick([1, 1, 2, 101]) }, () => ({
              key: r.chance(0.8) ? k : key(r, ctx),
              versionstamp: stamp(r),
            }));
            const arg = r.chance(0.1) ? r.pick([null, "x", { key: k }]) : undefined;
            steps.push({
              what: `check(${show(arg ?? checks.slice(0, 3))})`,
              apply: (op) =>
                op.check(...((arg === undefined ? checks : [arg]) as Deno.AtomicCheck[])),
            });
            break;
          }
          case 1: {
            const v = value(r, ctx);
            const options = r.chance(0.3) ? { expireIn: expireIn(r) } : undefined;
            steps.push({
              what: `set(${show(k)}, ${show(v)})`,
              apply: (op) => op.set(k as Deno.KvKey, v, options as { expireIn?: number }),
            });
            break;
          }
          case 2:
            steps.push({ what: `delete(${show(k)})`, apply: (op) => op.delete(k as Deno.KvKey) });
            break;
          case 3:
          case 4: {
            const kind = r.pick(["sum", "min", "max"] as const);
            const operand = r.chance(0.7)
              ? ctx.u64(r.pick([0n, 1n, 2n ** 64n - 1n]))
              : r.pick([1n, 1, -1n, 2n ** 64n, "1", null]);
            steps.push({
              what: `${kind}(${show(k)}, ${show(operand)})`,
              apply: (op) => op[kind](k as Deno.KvKey, operand as bigint),
            });
            break;
          }
          case 5: {
            const mutations = Array.from({ length: r.pick([1, 2, 1001]) }, () => {
              if (r.chance(0.1)) return r.pick([null, "set", 1, []]);
              const m: Record<string, unknown> = {
                type: r.pick(["set", "delete", "sum", "min", "max", "check", "SET", 1, undefined]),
                key: r.chance(0.8) ? k : key(r, ctx),
              };
              if (r.chance(0.8)) {
                m.value = r.chance(0.5) ? ctx.u64(r.pick([0n, 7n])) : value(r, ctx);
              }
              if (r.chance(0.2)) m.expireIn = expireIn(r);
              return m;
            });
            steps.push({
              what: `mutate(${show(mutations.slice(0, 3))}${mutations.length > 3 ? " …" : ""})`,
              apply: (op) => op.mutate(...(mutations as Deno.KvMutation[])),
            });
            break;
          }
          case 6: {
            const v = value(r, ctx);
            const options = enqueueOptions(r, ctx);
            steps.push({
              what: `enqueue(${show(v)}, ${show(options)})`,
              apply: (op) => op.enqueue(v, options as { delay?: number }),
            });
            break;
          }
          default: {
            const v = "w".repeat(r.pick([10, 30_000]));
            steps.push({
              what: `set(${show(k)}, <${v.length} chars>)`,
              apply: (op) => op.set(k as Deno.KvKey, v),
            });
          }
        }
      }
      return {
        what: `atomic().${steps.map((s) => s.what).join(".")}.commit()`,
        run: (kv) => {
          const op = kv.atomic();
          for (const s of steps) s.apply(op);
          return op.commit();
        },
      };
    }
  }
}

const denoCtx: Ctx = { stamp: Symbol("unset"), u64: (n) => new Deno.KvU64(n) };
const sessionCtx: Ctx = { stamp: Symbol("unset"), u64: (n) => new KvU64(n) };

// ------------------------------------------------------------------ helpers

/** Every path under `dir`, depth first (lstat: links are not followed). */
async function walk(dir: string): Promise<{ path: string; info: Deno.FileInfo }[]> {
  const out: { path: string; info: Deno.FileInfo }[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    const info = await Deno.lstat(path);
    out.push({ path, info });
    if (info.isDirectory) out.push(...await walk(path));
  }
  return out;
}

/** `PRAGMA integrity_check` of every session file under `root`. */
async function checkIntegrity(root: string): Promise<number> {
  let files = 0;
  for (const { path, info } of await walk(root)) {
    if (!info.isFile || !path.endsWith(`${sep}kv.sqlite3`)) continue;
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      equal(db.prepare("PRAGMA integrity_check").get()?.integrity_check, "ok", path);
    } finally {
      db.close();
    }
    files++;
  }
  return files;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

// ------------------------------------------------------------------ 1. ids

const ID_ATOMS = [
  "a",
  "Z",
  "0",
  "-",
  "_",
  ".",
  "..",
  "/",
  "\\",
  "\0",
  "~",
  "~2e",
  "+",
  "%2e",
  "con",
  "CON",
  "nul",
  "com1",
  "😀",
  "\ud800",
  "é",
  " ",
  "\n",
  ":",
  "*",
  "?",
  "|",
  "\u202e",
  "../",
  "/etc/passwd",
];

const HOSTILE_IDS: unknown[] = [
  ".",
  "..",
  "../..",
  "../../etc",
  "/etc/passwd",
  "a/../../b",
  "./",
  "~",
  "~2e~2e",
  "+",
  "a+",
  ".trash",
  "CON",
  "con",
  "nul.txt",
  "\0",
  "a\0b",
  "\\..\\..",
  "x".repeat(255),
  "x".repeat(256),
  "é".repeat(127) + "x",
  "é".repeat(128),
  "😀".repeat(63) + "abc",
  "\ud800",
  "",
  undefined,
  null,
  1,
  {},
  [],
  new String("a"),
  Symbol("id"),
  1n,
];

function randomId(r: Rng): unknown {
  if (r.chance(0.05)) return r.pick([undefined, null, 1, {}, [], true, 1n, new String("a")]);
  if (r.chance(0.1)) return r.pick(ID_ATOMS).repeat(1 + r.int(130));
  let s = "";
  for (let n = 1 + r.int(8); n > 0; n--) s += r.pick(ID_ATOMS);
  return r.chance(0.02) ? "" : s;
}

// ------------------------------------------------------------------ tests

for (const driver of testDrivers) {
  Deno.test(`[${driver}] openKv() with ${500 * SCALE} hostile ids throws TypeError or stays inside root, and sessions() gives every id back`, async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "a", "b", "root");
      await Deno.mkdir(root, { recursive: true });
      const findings = new Findings();
      const expected = new Map<string, [string, string]>();
      await using store = new SessionStore({ root, driver, maxOpenSessions: 32 });
      const pairs: [unknown, unknown][] = [];
      for (const id of HOSTILE_IDS) pairs.push([id, "s"], ["bot", id]);
      for (let i = 0; i < 500 * SCALE; i++) {
        const r = new Rng(seedOf(1, i));
        pairs.push([r.chance(0.3) ? "bot" : randomId(r), randomId(r)]);
      }
      let opened = 0;
      for (const [bot, session] of pairs) {
        const result = await outcome(() => store.openKv(bot as string, session as string));
        if (result.sig === "ok") {
          using kv = result.value as Awaited<ReturnType<SessionStore["openKv"]>>;
          await kv.set(["id"], [bot, session]);
          expected.set(JSON.stringify([bot, session]), [bot as string, session as string]);
          opened++;
        } else if (!(result.error instanceof TypeError)) {
          findings.add(`openKv(${show(bot)}, ${show(session)}): ${result.sig}`);
        } else if (typeof bot === "string" && typeof session === "string") {
          // A string id is refused only when it is empty, too long or not well-formed.
          const fine = (s: string) =>
            s.length > 0 && s.isWellFormed() && new TextEncoder().encode(s).length <= 255;
          if (fine(bot) && fine(session)) {
            findings.add(`openKv(${show(bot)}, ${show(session)}) refused a valid id`);
          }
        }
      }
      findings.assertNone("openKv with hostile ids");

      // Nothing was created outside root: tmp holds exactly a/b/root.
      deepEqual(
        (await walk(tmp)).filter((e) => !e.path.startsWith(root + sep)).map((e) => e.path),
        [
          join(tmp, "a"),
          join(tmp, "a", "b"),
          root,
        ],
      );
      const realRoot = await Deno.realPath(root);
      for (const { path, info } of await walk(root)) {
        ok(!info.isSymlink, `no symbolic link under root: ${path}`);
        ok((await Deno.realPath(path)).startsWith(realRoot + sep), path);
      }

      // sessions() gives back exactly the ids that were opened.
      const listed = new Map<string, string>();
      for await (const s of store.sessions()) {
        ok(s.path.startsWith(root + sep), s.path);
        listed.set(JSON.stringify([s.botId, s.sessionId]), s.path);
      }
      deepEqual([...listed.keys()].sort(), [...expected.keys()].sort());
      // Each session holds its own ids (a sample: reading all would be slow).
      let i = 0;
      for (const [bot, session] of expected.values()) {
        if (i++ % 10 !== 0) continue;
        using kv = await store.openKv(bot, session);
        deepEqual((await kv.get(["id"])).value, [bot, session]);
      }
      await store.close();
      equal(await checkIntegrity(root), expected.size);
      console.log(`[${driver}] seed ${SEED}: ${pairs.length} id pairs, ${opened} opened`);
    });
  });

  Deno.test(`[${driver}] ${3000 * SCALE} hostile keys, values, versionstamps, mutate payloads and options work or fail as Deno KV does, with a TypeError/RangeError`, async () => {
    await withTempDir(async (root) => {
      const findings = new Findings();
      const counts: Record<string, number> = {};
      let timing = 0;
      await using store = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "fuzz");
      const oracle = await Deno.openKv(":memory:");
      try {
        const dCtx = { ...denoCtx, stamp: oracle.commitVersionstamp() };
        const sCtx = { ...sessionCtx, stamp: kv.commitVersionstamp() };
        for (let i = 0; i < 3000 * SCALE; i++) {
          const theirs = kvOp(new Rng(seedOf(2, i)), dCtx);
          const ours = kvOp(new Rng(seedOf(2, i)), sCtx);
          const expected = await outcome(() => theirs.run(oracle));
          const actual = await outcome(() => ours.run(kv as unknown as Deno.Kv));
          counts[actual.sig] = (counts[actual.sig] ?? 0) + 1;
          if (actual.sig !== expected.sig && sameOutcome(actual, expected)) timing++;
          if (actual.sig !== "ok" && !allowedError(actual.error)) {
            findings.add(`#${i} ${actual.sig} ${(actual.error as Error)?.message}: ${ours.what}`);
          } else if (!sameOutcome(actual, expected)) {
            // Stricter than Deno KV, which reads a non-array object as no keys.
            const stricter = ours.what.startsWith("getMany(") &&
              !ours.what.startsWith("getMany([") &&
              expected.sig === "ok" && actual.error instanceof TypeError;
            if (!stricter) findings.add(`#${i} ${differ(actual, expected)}: ${ours.what}`);
          } else if (actual.sig === "ok" && ours.readBack !== undefined) {
            // A set that was acknowledged reads back with its versionstamp.
            const stampOf = (actual.value as Deno.KvCommitResult).versionstamp;
            const k = ours.readBack as unknown[];
            const written = k.at(-1) === sCtx.stamp ? undefined : k;
            if (written) {
              const entry = await kv.get(written as Deno.KvKey);
              if (entry.versionstamp !== stampOf) {
                findings.add(`#${i} read back ${show(entry)} after ${stampOf}: ${ours.what}`);
              }
            }
          }
        }
      } finally {
        oracle.close();
      }
      findings.assertNone("KV calls with hostile input");
      // The store and the file are still fine.
      await kv.set(["after"], "fuzz");
      equal((await kv.get(["after"])).value, "fuzz");
      kv.close();
      await store.close();
      equal(await checkIntegrity(root), 1);
      console.log(
        `[${driver}] seed ${SEED}: outcomes ${JSON.stringify(counts)}; ${timing} errors thrown ` +
          "synchronously where Deno KV rejected, or the reverse",
      );
    });
  });

  Deno.test(`[${driver}] ${1500 * SCALE} list() calls with random selectors, options and forged cursors agree with Deno KV and never leave the selector's range`, async () => {
    await withTempDir(async (root) => {
      const findings = new Findings();
      await using store = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "list");
      const oracle = await Deno.openKv(":memory:");
      const firsts: Deno.KvKeyPart[] = ["a", "b", "", 1, -0, 2n, true, new Uint8Array([1])];
      const seconds: Deno.KvKeyPart[] = [0, 1, 2, 3, "x", "y", false, 0n, new Uint8Array()];
      const data = new Rng(seedOf(3, -1));
      const keys: Deno.KvKey[] = [];
      for (let i = 0; i < 200; i++) {
        const k: Deno.KvKeyPart[] = [data.pick(firsts)];
        if (data.chance(0.8)) k.push(data.pick(seconds));
        if (data.chance(0.3)) k.push(data.int(5));
        keys.push(k);
      }
      for (let i = 0; i < keys.length; i += 10) {
        const a = kv.atomic();
        const b = oracle.atomic();
        for (const k of keys.slice(i, i + 10)) {
          a.set(k, i);
          b.set(k, i);
        }
        await a.commit();
        await b.commit();
      }
      const domainKey = (r: Rng, valid = false): unknown[] => {
        const k: unknown[] = [];
        for (let n = r.int(3); n > 0; n--) k.push(r.pick(n === 1 ? seconds : firsts));
        return !valid && r.chance(0.05) ? [undefined] : k;
      };
      const b64 = (bytes: Uint8Array) =>
        btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
      const cursors: string[] = [];
      let nonEmpty = 0;
      let forged = 0;
      try {
        for (let i = 0; i < 1500 * SCALE; i++) {
          const r = new Rng(seedOf(3, i));
          const shape = r.int(8);
          const selector: Record<string, unknown> = {};
          if (shape !== 1 && shape !== 7) selector.prefix = domainKey(r).slice(0, 1 + r.int(2));
          if (shape === 1 || shape === 2 || shape === 7) selector.start = domainKey(r);
          if (shape === 1 || shape === 3 || shape === 7) selector.end = domainKey(r);
          if (shape === 4 && r.chance(0.5)) selector.prefix = r.pick([[], undefined, null, "a"]);
          const options: Record<string, unknown> = {};
          if (r.chance(0.6)) {
            const c = r.int(6);
            options.cursor = c === 0
              ? r.pick(["", "=", "A", "AA==", "AAA=", "!!!!", "AB\0=", "////"])
              : c === 1
              ? b64(r.bytes(r.int(12)))
              : c === 2
              ? b64(encodeKey(domainKey(r, true)).subarray(r.int(3)))
              : cursors.length > 0
              ? r.pick(cursors) // A real cursor, usually of another selector.
              : "";
            if (c !== 0) forged++;
          }
          if (r.chance(0.3)) options.limit = r.pick([1, 2, 5, 0, -1, 1.5, NaN, "3", 1e9]);
          if (r.chance(0.3)) options.batchSize = r.pick([1, 3, 500, 1000, 1001, 0, 2.5]);
          if (r.chance(0.3)) options.reverse = r.pick([true, false, undefined]);
          if (r.chance(0.1)) options.consistency = r.pick(["strong", "eventual", "weak"]);
          const what = `list(${show(selector)}, ${show(options)})`;
          const drain = (target: Deno.Kv) => {
            const it = target.list(selector as Deno.KvListSelector, options);
            return (async () => {
              const got: Deno.KvKey[] = [];
              for await (const entry of it) {
                got.push(entry.key);
                if (got.length > 300) break;
              }
              return { keys: got, cursor: it.cursor };
            })();
          };
          const expected = await outcome(() => drain(oracle));
          const actual = await outcome(() => drain(kv as unknown as Deno.Kv));
          if (actual.sig !== "ok" && !allowedError(actual.error)) {
            findings.add(`#${i} ${what}: ${actual.sig} ${(actual.error as Error).message}`);
            continue;
          }
          if (!sameOutcome(actual, expected)) {
            findings.add(`#${i} ${differ(actual, expected)}: ${what}`);
            continue;
          }
          if (actual.sig !== "ok") continue;
          const got = actual.value as { keys: Deno.KvKey[]; cursor: string };
          const want = expected.value as { keys: Deno.KvKey[]; cursor: string };
          if (Deno.inspect(got.keys) !== Deno.inspect(want.keys) || got.cursor !== want.cursor) {
            findings.add(
              `#${i} ${what}: SessionKv ${show(got)}, Deno KV ${show(want)}`,
            );
          }
          if (got.keys.length > 0) nonEmpty++;
          if (got.cursor) cursors.push(got.cursor);
          // Never outside the selector, whatever the cursor said.
          // Selector parts are read as array-likes (a string prefix "a" is ["a"]), as Deno KV does.
          const bound = (part: unknown) =>
            part ? encodeKey(Array.prototype.slice.call(part)) : undefined;
          const prefix = bound(selector.prefix);
          const start = bound(selector.start);
          const end = bound(selector.end);
          for (const k of got.keys) {
            const bytes = encodeKey(k);
            if (
              (prefix && (!startsWith(bytes, prefix) || bytes.length === prefix.length)) ||
              (start && compareBytes(bytes, start) < 0) ||
              (end && compareBytes(bytes, end) >= 0)
            ) {
              findings.add(`#${i} ${what}: key ${show(k)} is outside the selector`);
            }
          }
        }
      } finally {
        oracle.close();
      }
      findings.assertNone("list() with random selectors and forged cursors");
      ok(nonEmpty > 100, `only ${nonEmpty} lists returned entries`);
      kv.close();
      await store.close();
      equal(await checkIntegrity(root), 1);
      console.log(
        `[${driver}] seed ${SEED}: ${
          1500 * SCALE
        } lists, ${nonEmpty} non-empty, ${forged} with forged or foreign cursors`,
      );
    });
  });
}

Deno.test(`SessionStore options from fuzzing either throw TypeError/RangeError or give a store that works without hanging`, async () => {
  await withTempDir(async (root) => {
    const findings = new Findings();
    const numbers = [undefined, 0, 0.5, 1, 2, -1, NaN, Infinity, 2 ** 31, 1e300, "5", null, 1n];
    let working = 0;
    for (let i = 0; i < 60; i++) {
      const r = new Rng(seedOf(4, i));
      const options: Record<string, unknown> = { root: join(root, String(i)) };
      for (
        const name of [
          "busyTimeoutMs",
          "maxOpenSessions",
          "idleCloseMs",
          "cacheSizeKiB",
          "maxValueBytes",
        ]
      ) {
        if (r.chance(0.35)) options[name] = r.pick(numbers);
      }
      if (r.chance(0.1)) options.wal = r.pick([false, "no", 0]);
      if (r.chance(0.05)) options.root = r.pick(["", 1, undefined]);
      const made = await outcome(() => new SessionStore(options as never));
      if (made.sig !== "ok") {
        if (!(made.error instanceof TypeError || made.error instanceof RangeError)) {
          findings.add(`new SessionStore(${show(options)}): ${made.sig}`);
        }
        continue;
      }
      const store = made.value as SessionStore;
      try {
        const used = await outcome(async () => {
          using kv = await store.openKv("bot", "s");
          await kv.set(["k"], "v".repeat(100));
          using other = await store.openKv("bot", "t");
          await other.set(["k"], 1);
          return (await kv.get(["k"])).value;
        });
        if (used.sig !== "ok" && !(used.error instanceof TypeError)) {
          findings.add(`store with ${show(options)}: ${used.sig} ${(used.error as Error).message}`);
        } else if (used.sig === "ok") {
          working++;
        }
      } catch (error) {
        findings.add(`store with ${show(options)}: ${(error as Error).message}`);
      } finally {
        await Promise.race([store.close(), new Promise((resolve) => setTimeout(resolve, 500))]);
      }
    }
    findings.assertNone("SessionStore options");
    // About a fifth of the random configurations are valid (13 expected):
    // enough of them must have worked for the test to mean something.
    ok(working >= 4, `${working} fuzzed configurations worked`);
  });
});

Deno.test(`acquire(), cleanup() and sessions() with fuzzed options throw TypeError/RangeError or work; a lease wait never times out before its timeoutMs`, async () => {
  await withTempDir(async (root) => {
    const findings = new Findings();
    await using store = new SessionStore({ root });
    using kv = await store.openKv("bot", "held");
    await kv.set(["k"], 1);
    const held = await store.acquire("bot", "held");
    const timeouts = [undefined, 0, -1, 1, 300, 2 ** 31, 2 ** 40, Infinity, NaN, "100", null];
    for (const timeoutMs of timeouts) {
      const controller = new AbortController();
      const started = Date.now();
      const wait = store.acquire("bot", "held", { timeoutMs, signal: controller.signal } as never);
      const early = await Promise.race([
        wait.then(() => "acquired", (error) => error),
        new Promise((resolve) => setTimeout(() => resolve("still waiting"), 400)),
      ]);
      const waited = Date.now() - started;
      controller.abort(new Error("test done"));
      await wait.catch(() => undefined);
      const limit = typeof timeoutMs === "number" && timeoutMs > 0 ? timeoutMs : undefined;
      if (early === "acquired") {
        findings.add(`acquire({ timeoutMs: ${timeoutMs} }) got a held lease`);
      } else if (early instanceof TypeError || early instanceof RangeError) {
        // Refused: fine.
      } else if (early instanceof Error && limit !== undefined && limit >= 400) {
        findings.add(
          `acquire({ timeoutMs: ${timeoutMs} }) gave up after ${waited} ms: ${early.name}: ${early.message}`,
        );
      } else if (early instanceof Error && early.name !== "LeaseTimeoutError") {
        findings.add(`acquire({ timeoutMs: ${timeoutMs} }): ${early.name}: ${early.message}`);
      }
    }
    await held.release();
    for (
      const options of [
        { olderThanMs: -1 },
        { olderThanMs: NaN },
        { olderThanMs: "1" },
        { olderThanDays: "x" },
        { olderThanMs: 1, olderThanDays: 1 },
        { olderThanMs: Infinity },
        { olderThanDays: 1e300 },
        { dryRun: "yes", olderThanMs: 1e12 },
        { onProgress: 5, olderThanMs: 1e12 },
        null,
      ]
    ) {
      const result = await outcome(() => store.cleanup(options as never));
      if (result.sig !== "ok" && !allowedError(result.error)) {
        findings.add(`cleanup(${show(options)}): ${result.sig}`);
      }
    }
    for (const botId of ["", "bot", "../..", 1, null, "\ud800", "x".repeat(300)]) {
      const result = await outcome(() => Array.fromAsync(store.sessions({ botId } as never)));
      if (result.sig !== "ok" && !(result.error instanceof TypeError)) {
        findings.add(`sessions({ botId: ${show(botId)} }): ${result.sig}`);
      }
    }
    findings.assertNone("store method options");
    // The held session is intact and still usable.
    equal((await kv.get(["k"])).value, 1);
  });
});

Deno.test("enqueue() refuses a delay or backoffSchedule that is not numbers, as Deno KV does, instead of scheduling by string concatenation", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    using kv = await store.openKv("bot", "queue");
    const oracle = await Deno.openKv(":memory:");
    const findings = new Findings();
    try {
      const bad: unknown[] = [
        { delay: "5" },
        { delay: "1000" },
        { delay: true },
        { backoffSchedule: 5 },
        { backoffSchedule: "100" },
        { backoffSchedule: ["100"] },
        { backoffSchedule: [null] },
        { backoffSchedule: { length: 1, 0: 1 } },
      ];
      for (const options of bad) {
        const expected = await outcome(() => oracle.enqueue("m", options as never));
        const actual = await outcome(() => kv.enqueue("m", options as never));
        ok(expected.error instanceof TypeError, `Deno KV refuses ${show(options)}`);
        if (!(actual.error instanceof TypeError)) {
          findings.add(`enqueue("m", ${show(options)}): ${differ(actual, expected)}`);
        }
      }
    } finally {
      oracle.close();
    }
    // Whatever was accepted must not sit in the queue for centuries.
    await store.close();
    const db = new DatabaseSync(join(root, "bot", "queue", "kv.sqlite3"), { readOnly: true });
    try {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE name = 'queue'").all();
      const latest = tables.length === 0
        ? undefined
        : Number(db.prepare("SELECT CAST(max(ready_at) AS TEXT) AS t FROM queue").get()?.t);
      if (latest !== undefined && latest > Date.now() + 86_400_000) {
        findings.add(
          `a message is due at ${latest} ms, ${new Date(latest).getUTCFullYear() || "far beyond"}`,
        );
      }
    } finally {
      db.close();
    }
    findings.assertNone("enqueue options");
  });
});

Deno.test("list() reverses only for reverse: true, as Deno KV does", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    using kv = await store.openKv("bot", "reverse");
    const oracle = await Deno.openKv(":memory:");
    try {
      for (const k of ["a", "b", "c"]) {
        await kv.set([k], 1);
        await oracle.set([k], 1);
      }
      const order = async (target: Deno.Kv, reverse: unknown) => {
        let out = "";
        for await (const e of target.list({ prefix: [] }, { reverse } as never)) {
          out += String(e.key[0]);
        }
        return out;
      };
      const seen: Record<string, [string, string]> = {};
      for (const reverse of [true, false, 1, "yes", "false", {}, 0, null]) {
        seen[show(reverse)] = [
          await order(kv as unknown as Deno.Kv, reverse),
          await order(oracle, reverse),
        ];
      }
      for (const [reverse, [ours, theirs]] of Object.entries(seen)) {
        equal(ours, theirs, `reverse: ${reverse}: SessionKv ${ours}, Deno KV ${theirs}`);
      }
    } finally {
      oracle.close();
    }
  });
});

Deno.test("new SessionStore() refuses numeric options it cannot honour (maxOpenSessions below 1, an infinite cacheSizeKiB) instead of making a store whose openKv hangs or fails", async () => {
  await withTempDir(async (root) => {
    const findings = new Findings();
    const cases: Record<string, unknown>[] = [
      { maxOpenSessions: 0.5 },
      { cacheSizeKiB: Infinity },
    ];
    for (const options of cases) {
      let store: SessionStore;
      try {
        store = new SessionStore({ root, ...options });
      } catch (error) {
        if (!(error instanceof RangeError)) findings.add(`${show(options)}: ${error}`);
        continue;
      }
      try {
        const opened = await outcome(async () => {
          using kv = await store.openKv("bot", "s");
          await kv.set(["k"], 1);
        });
        if (opened.sig !== "ok") {
          findings.add(
            `${show(options)}: openKv: ${opened.sig} ${(opened.error as Error).message}`,
          );
        }
      } catch (error) {
        findings.add(`${show(options)}: openKv: ${(error as Error).message}`);
      } finally {
        await Promise.race([store.close(), new Promise((resolve) => setTimeout(resolve, 200))]);
      }
    }
    findings.assertNone("numeric store options");
  });
});
