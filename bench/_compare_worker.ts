/**
 * Private to `bench/compare.ts`: the parts it measures in a child process, so
 * that each has its own event loop (the two-process writes) or its own
 * resident memory (the memory probes). Prints one JSON object.
 *
 *   deno run -A --v8-flags=--expose-gc bench/_compare_worker.ts <mode> <json options>
 *
 * Modes:
 * - `write-sessions`: SessionKv sets, round-robin over this process's own
 *   sessions, in the given locking mode (exclusive works here: no other
 *   process opens these sessions).
 * - `write-one-session`: the same sets into one session shared by every
 *   process, the session id as the first key part (the same work on one file).
 * - `write-shared`: the same sets with raw statements into one SQLite file
 *   shared by every process, keyed by `(session, key)`, waiting on SQLite's
 *   busy handler (the design sessionkv replaces).
 * - `idle-memory`: resident memory per open idle session.
 * - `touch`: resident memory while touching many sessions with a bounded store.
 *
 * The memory modes take the driver and locking mode of a SessionKv variant.
 *
 * @module
 */
import { getHeapSpaceStatistics } from "node:v8";
import { DatabaseSync } from "node:sqlite";
import { type SessionKv, SessionStore } from "../mod.ts";
import { encodeKey } from "../src/codec/key_codec.ts";
import { encodeValue } from "../src/codec/value_codec.ts";
import { KEYS, type SessionKvVariant, VALUE, variantOptions } from "./_subjects.ts";

/** Options of the `write-*` modes. */
export interface WriteOptions {
  /** The store root, or the shared file (`write-shared`). */
  path: string;
  /** This process's number, part of its session ids. */
  proc: number;
  /** Sessions this process writes to, round-robin. */
  sessions: number;
  /** Epoch ms at which every process starts writing. */
  startAt: number;
  /** How long to write. */
  durationMs: number;
  /** SQLite's locking mode, for `write-sessions`. */
  lockingMode?: "normal" | "exclusive";
}

/** What a `write-*` child reports. */
export interface WriteResult {
  /** Writes completed. */
  ops: number;
  /** The longest single write, in ms. */
  maxStallMs: number;
}

/** Options of the memory modes: the store's driver and locking mode, and more. */
export interface MemoryOptions extends Pick<SessionKvVariant, "driver" | "lockingMode"> {
  /** The store root. */
  root: string;
  /** Sessions to open (`idle-memory`) or touch (`touch`). */
  count: number;
}

/** What `idle-memory` reports. */
export interface IdleMemoryResult {
  /** Resident bytes per open idle session. */
  perSessionBytes: number;
}

/** What `touch` reports. */
export interface TouchResult {
  /** Resident set before the first session, in bytes: the runtime and the module. */
  startRssBytes: number;
  /** Largest resident set seen while touching, in bytes. */
  peakRssBytes: number;
  /** Resident set at the end, in bytes. */
  finalRssBytes: number;
  /** Resident set at the end after a full garbage collection, in bytes. */
  collectedRssBytes: number;
  /** Session files open at the end. */
  openSessions: number;
  /** V8's heap (`heapTotal`) at the end: what the JS side holds from the OS. */
  heapTotalBytes: number;
  /** V8's young generation at the end, part of `heapTotalBytes`. */
  youngGenerationBytes: number;
  /** Anonymous and file-backed (the Deno binary's pages) parts of the final RSS; Linux only. */
  finalRss?: { anonBytes: number; fileBytes: number };
}

/** `RssAnon` and `RssFile` of this process, from `/proc/self/status` (Linux). */
function rssParts(): { anonBytes: number; fileBytes: number } | undefined {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const kib = (name: string) =>
      Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))?.[1]);
    const anonBytes = kib("RssAnon") * 1024;
    const fileBytes = kib("RssFile") * 1024;
    return Number.isFinite(anonBytes + fileBytes) ? { anonBytes, fileBytes } : undefined;
  } catch {
    return undefined; // Not Linux.
  }
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

/** Writes until the deadline; `write` performs one set of entry `i` in session `s`. */
async function writeLoop(
  options: WriteOptions,
  write: (s: number, i: number) => unknown,
): Promise<WriteResult> {
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, options.startAt - Date.now())));
  const deadline = performance.now() + options.durationMs;
  let ops = 0;
  let maxStallMs = 0;
  for (let now = performance.now(); now < deadline; ops++) {
    const result = write(ops % options.sessions, ops);
    if (result instanceof Promise) await result;
    const after = performance.now();
    if (after - now > maxStallMs) maxStallMs = after - now;
    now = after;
  }
  return { ops, maxStallMs };
}

async function writeSessions(options: WriteOptions): Promise<WriteResult> {
  await using store = new SessionStore({
    root: options.path,
    lockingMode: options.lockingMode ?? "normal",
  });
  const kvs: SessionKv[] = [];
  for (let s = 0; s < options.sessions; s++) {
    kvs.push(await store.openKv("bench", `p${options.proc}-s${s}`));
  }
  const result = await writeLoop(
    options,
    (s, i) => kvs[s]!.set(["messages", i % KEYS], VALUE),
  );
  for (const kv of kvs) kv.close();
  return result;
}

async function writeOneSession(options: WriteOptions): Promise<WriteResult> {
  await using store = new SessionStore({ root: options.path });
  using kv = await store.openKv("bench", "shared");
  const ids = Array.from({ length: options.sessions }, (_, s) => `p${options.proc}-s${s}`);
  return await writeLoop(options, (s, i) => kv.set([ids[s]!, "messages", i % KEYS], VALUE));
}

function writeShared(options: WriteOptions): Promise<WriteResult> {
  // SQLite's own busy handler, as a shared-file design waits for the lock.
  const db = new DatabaseSync(options.path, { timeout: 5000 });
  db.exec("PRAGMA synchronous = NORMAL");
  const put = db.prepare("INSERT OR REPLACE INTO kv (s, k, v, version) VALUES (?, ?, ?, ?)");
  const ids = Array.from({ length: options.sessions }, (_, s) => `p${options.proc}-s${s}`);
  const keys = Array.from({ length: KEYS }, (_, i) => encodeKey(["messages", i]));
  return writeLoop(options, (s, i) => {
    // Encoding the value is part of the work, as in SessionKv.set.
    put.run(ids[s]!, keys[i % KEYS]!, encodeValue(VALUE).bytes, i);
  }).finally(() => db.close());
}

async function idleMemory(options: MemoryOptions): Promise<IdleMemoryResult> {
  const { root, count } = options;
  await using store = new SessionStore({
    root,
    ...variantOptions(options),
    maxOpenSessions: count + 100,
    idleCloseMs: 3_600_000,
  });
  const touch = async (botId: string, sessionId: string) => {
    using kv = await store.openKv(botId, sessionId);
    await kv.set(["messages", 0], VALUE);
    await kv.get(["messages", 0]);
  };
  // Warm up code paths and the allocator before the baseline.
  for (let i = 0; i < 50; i++) await touch("warm", `s${i}`);
  gc();
  const before = Deno.memoryUsage().rss;
  for (let i = 0; i < count; i++) await touch("bench", `s${i}`);
  gc();
  const after = Deno.memoryUsage().rss;
  return { perSessionBytes: (after - before) / count };
}

async function touchMany(options: MemoryOptions): Promise<TouchResult> {
  const { root, count } = options;
  await using store = new SessionStore({ root, ...variantOptions(options), maxOpenSessions: 256 });
  const startRssBytes = Deno.memoryUsage().rss;
  let peakRssBytes = 0;
  for (let i = 0; i < count; i++) {
    using kv = await store.openKv("bench", `s${i}`);
    await kv.set(["messages", 0], VALUE);
    if (i % 100 === 0) peakRssBytes = Math.max(peakRssBytes, Deno.memoryUsage().rss);
  }
  const final = Deno.memoryUsage();
  const finalRss = rssParts();
  const youngGenerationBytes = getHeapSpaceStatistics()
    .filter((space) => space.space_name.startsWith("new_"))
    .reduce((sum, space) => sum + space.space_size, 0);
  gc();
  return {
    startRssBytes,
    peakRssBytes: Math.max(peakRssBytes, final.rss),
    finalRssBytes: final.rss,
    collectedRssBytes: Deno.memoryUsage().rss,
    openSessions: store.stats().openSessions,
    heapTotalBytes: final.heapTotal,
    youngGenerationBytes,
    ...(finalRss === undefined ? {} : { finalRss }),
  };
}

if (import.meta.main) {
  const [mode, json] = Deno.args;
  const options = JSON.parse(json ?? "{}");
  const modes: Record<string, (options: never) => Promise<unknown>> = {
    "write-sessions": writeSessions,
    "write-one-session": writeOneSession,
    "write-shared": writeShared,
    "idle-memory": idleMemory,
    "touch": touchMany,
  };
  const run = modes[mode ?? ""];
  if (run === undefined) throw new TypeError(`Unknown mode: "${mode}"`);
  console.log(JSON.stringify(await run(options as never)));
}
