/**
 * `deno task bench:compare`: the same workloads, in one run, on `SessionKv`
 * (both drivers, and the node driver with exclusive locking), real Deno KV on
 * a file, raw `node:sqlite` prepared statements and one SQLite file shared by
 * every session; writes the ratios to `bench/RESULTS.md` and a chart to
 * `bench/results.svg`.
 *
 *   deno run -A --unstable-kv bench/compare.ts [--quick]
 *
 * `--quick` (about a minute) runs fewer sessions, shorter rounds and smaller
 * counts, for smoke tests; its numbers are noisier. Subjects take turns
 * within each round, so background load hits them alike, and each number is
 * the median of the rounds. Setup (filling sessions, making directories) is
 * never timed.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadFfiDriver, nodeDriver, SessionStore } from "../mod.ts";
import { encodeKey } from "../src/codec/key_codec.ts";
import { encodeValue } from "../src/codec/value_codec.ts";
import type {
  IdleMemoryResult,
  MemoryOptions,
  TouchResult,
  WriteOptions,
  WriteResult,
} from "./_compare_worker.ts";
import { makeIdleSessions } from "./_idle_sessions.ts";
import {
  renderMarkdown,
  renderSvg,
  type Results,
  SMALL_YOUNG_GENERATION,
  type WorkloadResult,
} from "./_report.ts";
import {
  createRawTable,
  denoKvSubject,
  KEYS,
  RAW_PRAGMAS,
  rawSubject,
  SESSIONKV_VARIANTS,
  sessionKvSubject,
  type SessionKvVariant,
  type Subject,
  SUBJECT_NAMES,
  type SubjectId,
  VALUE,
  variantOptions,
} from "./_subjects.ts";

const BENCH_DIR = new URL(".", import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname;

/** How much of everything to run. */
interface Config {
  /** Sessions of the round-robin workloads. */
  sessions: number;
  /** Measured rounds per workload; each subject runs once per round. */
  rounds: number;
  /** Time per subject per round, in ms. */
  budgetMs: number;
  /** Duration of each two-process run, in ms. */
  twoProcessMs: number;
  /** Two-process runs per mode. */
  twoProcessRounds: number;
  /** Idle session directories for the cleanup scan. */
  cleanupCount: number;
  /** Sessions opened to measure resident memory per idle session. */
  idleCount: number;
  /** Sessions touched with `maxOpenSessions: 256`. */
  touchCount: number;
}

const FULL: Config = {
  sessions: 1000,
  rounds: 5,
  budgetMs: 400,
  twoProcessMs: 5000,
  twoProcessRounds: 2,
  cleanupCount: 100_000,
  idleCount: 500,
  touchCount: 10_000,
};

const QUICK: Config = {
  sessions: 100,
  rounds: 3,
  budgetMs: 100,
  twoProcessMs: 2000,
  twoProcessRounds: 1,
  cleanupCount: 10_000,
  idleCount: 200,
  touchCount: 1_000,
};

type Op = (i: number) => unknown;

/** Runs `op` for about `budgetMs`; returns calls per second. Awaits only promises. */
async function opsPerSecond(op: Op, budgetMs: number): Promise<number> {
  let n = 0;
  const start = performance.now();
  const deadline = start + budgetMs;
  let now = start;
  while (now < deadline) {
    for (let k = 0; k < 8; k++) {
      const result = op(n++);
      if (result instanceof Promise) await result;
    }
    now = performance.now();
  }
  return n / ((now - start) / 1000);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Measures one workload on several subjects: a warm-up, then `rounds`
 * rounds in which each subject runs once (in a rotating order).
 */
async function race(
  config: Config,
  ops: Partial<Record<SubjectId, Op>>,
): Promise<Partial<Record<SubjectId, number>>> {
  const entries = Object.entries(ops) as [SubjectId, Op][];
  const samples = new Map<SubjectId, number[]>(entries.map(([id]) => [id, []]));
  for (const [, op] of entries) await opsPerSecond(op, config.budgetMs / 2);
  for (let round = 0; round < config.rounds; round++) {
    for (let k = 0; k < entries.length; k++) {
      const [id, op] = entries[(round + k) % entries.length]!;
      samples.get(id)!.push(await opsPerSecond(op, config.budgetMs));
    }
  }
  return Object.fromEntries([...samples].map(([id, s]) => [id, median(s)]));
}

const OPERATIONS = [
  { op: "set", label: "set", perOp: 1 },
  { op: "get", label: "get", perOp: 1 },
  { op: "getMany", label: "getMany(10)", perOp: 1 },
  { op: "list", label: `list of ${KEYS}`, perOp: KEYS },
  { op: "atomic", label: "atomic check+set", perOp: 1 },
] as const;

/** The five operations on every subject, with `sessions` sessions taken round-robin. */
async function operations(
  dir: string,
  config: Config,
  sessions: number,
  variants: readonly SessionKvVariant[],
): Promise<WorkloadResult[]> {
  const at = (name: string) => join(dir, `${name}-${sessions}`);
  const subjects: Subject[] = [];
  try {
    for (const variant of variants) {
      log(`filling ${sessions} session(s) × ${KEYS} entries: ${SUBJECT_NAMES[variant.id]}`);
      subjects.push(await sessionKvSubject(variant, at(variant.id), sessions));
    }
    log(`filling ${sessions} session(s) × ${KEYS} entries: Deno KV, raw, shared`);
    subjects.push(await denoKvSubject(at("denokv.sqlite3"), sessions));
    for (const shared of [false, true]) {
      const path = at(shared ? "shared" : "raw");
      await Deno.mkdir(path);
      subjects.push(rawSubject(path, sessions, shared));
    }
    const results: WorkloadResult[] = [];
    for (const { op, label, perOp } of OPERATIONS) {
      const ops = Object.fromEntries(subjects.map((subject) => {
        // Round-robin over the sessions; each session's keys in turn.
        const run = (i: number) => subject[op](i % sessions, Math.floor(i / sessions));
        return [subject.id, run];
      }));
      log(`${label}, ${sessions} session(s)`);
      const values = await race(config, ops);
      results.push({
        op,
        sessions,
        name: `${label}, ${sessions === 1 ? "1 session" : `${sessions} sessions`}`,
        unit: perOp === 1 ? "ops/s" : "entries/s",
        values: scale(values, perOp),
      });
    }
    return results;
  } finally {
    for (const subject of subjects) await subject[Symbol.asyncDispose]();
  }
}

function scale(
  values: Partial<Record<SubjectId, number>>,
  factor: number,
): Partial<Record<SubjectId, number>> {
  return Object.fromEntries(Object.entries(values).map(([id, v]) => [id, v * factor]));
}

/** Creating a session and its first write; reopening an evicted one for a read. */
async function lifecycle(
  dir: string,
  config: Config,
  variants: readonly SessionKvVariant[],
): Promise<WorkloadResult[]> {
  const value = encodeValue(VALUE).bytes;
  const key = encodeKey(["messages", 0]);
  const cold: Partial<Record<SubjectId, Op>> = {};
  const reopen: Partial<Record<SubjectId, Op>> = {};
  const stores: SessionStore[] = [];
  const WARM = 64;
  try {
    for (const variant of variants) {
      const { id } = variant;
      const store = new SessionStore({ root: join(dir, `cold-${id}`), ...variantOptions(variant) });
      stores.push(store);
      cold[id] = async (i) => {
        using kv = await store.openKv("bench", `s${i}`);
        await kv.set(["messages", 0], VALUE);
      };
      // 64 sessions through 8 slots, round-robin: every read reopens a file.
      const small = new SessionStore({
        root: join(dir, `reopen-${id}`),
        ...variantOptions(variant),
        maxOpenSessions: 8,
      });
      stores.push(small);
      for (let s = 0; s < WARM; s++) {
        using kv = await small.openKv("bench", `s${s}`);
        await kv.set(["messages", 0], VALUE);
      }
      reopen[id] = async (i) => {
        using kv = await small.openKv("bench", `s${i % WARM}`);
        await kv.get(["messages", 0]);
      };
    }

    const denoDir = join(dir, "cold-denokv");
    await Deno.mkdir(denoDir);
    cold.denokv = async (i) => {
      const kv = await Deno.openKv(join(denoDir, `s${i}.sqlite3`));
      await kv.set(["messages", 0], VALUE);
      kv.close();
    };
    const denoWarm = join(dir, "reopen-denokv");
    await Deno.mkdir(denoWarm);
    for (let s = 0; s < WARM; s++) {
      const kv = await Deno.openKv(join(denoWarm, `s${s}.sqlite3`));
      await kv.set(["messages", 0], VALUE);
      kv.close();
    }
    reopen.denokv = async (i) => {
      const kv = await Deno.openKv(join(denoWarm, `s${i % WARM}.sqlite3`));
      await kv.get(["messages", 0]);
      kv.close();
    };

    const makeRaw = (path: string) => {
      const db = new DatabaseSync(path);
      createRawTable(db, false);
      db.prepare("INSERT OR REPLACE INTO kv (k, v, version) VALUES (?, ?, ?)").run(key, value, 1);
      db.close();
    };
    const rawDir = join(dir, "cold-raw");
    await Deno.mkdir(rawDir);
    cold.raw = (i) => makeRaw(join(rawDir, `s${i}.sqlite3`));
    const rawWarm = join(dir, "reopen-raw");
    await Deno.mkdir(rawWarm);
    for (let s = 0; s < WARM; s++) makeRaw(join(rawWarm, `s${s}.sqlite3`));
    reopen.raw = (i) => {
      const db = new DatabaseSync(join(rawWarm, `s${i % WARM}.sqlite3`));
      db.exec(RAW_PRAGMAS);
      db.prepare("SELECT v, version FROM kv WHERE k = ?").get(key);
      db.close();
    };

    // A new session in the shared file is a first row; there is nothing to reopen.
    const shared = new DatabaseSync(join(dir, "cold-shared.sqlite3"));
    createRawTable(shared, true);
    const put = shared.prepare("INSERT OR REPLACE INTO kv (s, k, v, version) VALUES (?, ?, ?, ?)");
    cold.shared = (i) => void put.run(`s${i}`, key, value, 1);

    log("new session (cold open)");
    const coldValues = await race(config, cold);
    log("reopen after eviction");
    const reopenValues = await race(config, reopen);
    shared.close();
    return [
      { op: "cold", name: "new session: open + first set", unit: "ops/s", values: coldValues },
      { op: "reopen", name: "reopen after eviction + get", unit: "ops/s", values: reopenValues },
    ];
  } finally {
    for (const store of stores) await store.close();
  }
}

/** Runs the worker in `n` child processes at once; returns their reports. */
async function children<T>(mode: string, options: object[], v8Flags: string[] = []): Promise<T[]> {
  const worker = join(BENCH_DIR, "_compare_worker.ts");
  const flags = `--v8-flags=${["--expose-gc", ...v8Flags].join(",")}`;
  return await Promise.all(options.map(async (o) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", flags, worker, mode, JSON.stringify(o)],
      cwd: REPO,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`Worker "${mode}" exited with code ${out.code}`);
    return JSON.parse(new TextDecoder().decode(out.stdout)) as T;
  }));
}

/** One two-process run: who writes, and how. */
interface Writer {
  worker: "write-sessions" | "write-one-session" | "write-shared";
  processes: number;
  /** SessionKv's locking mode, for `write-sessions`. */
  lockingMode?: "exclusive";
}

/** The two-process runs: who writes, and where. */
const WRITERS = {
  /** One process alone on its own sessions: the scale for the others. */
  single: { worker: "write-sessions", processes: 1 },
  sessions: { worker: "write-sessions", processes: 2 },
  /** Own sessions only, so each process may keep its files locked. */
  exclusive: { worker: "write-sessions", processes: 2, lockingMode: "exclusive" },
  oneSession: { worker: "write-one-session", processes: 2 },
  shared: { worker: "write-shared", processes: 2 },
} as const satisfies Record<string, Writer>;

/**
 * Processes writing at once: each to its own sessions (in either locking
 * mode), both into one session file (the same SessionKv work), both into one
 * raw shared file, and one process alone for scale.
 */
async function twoProcesses(dir: string, config: Config): Promise<Results["twoProcesses"]> {
  const names = Object.keys(WRITERS) as (keyof typeof WRITERS)[];
  const totals = Object.fromEntries(names.map((name) => [name, { ops: 0, maxStallMs: 0 }]));
  for (let round = 0; round < config.twoProcessRounds; round++) {
    for (const name of names) {
      const writer: Writer = WRITERS[name];
      const { worker, processes } = writer;
      let path = join(dir, `two-${name}-${round}`);
      if (name === "shared") {
        path += ".sqlite3";
        const db = new DatabaseSync(path);
        createRawTable(db, true);
        db.close();
      }
      log(`${processes} process(es) writing: ${name}`);
      // Child processes take a while to start under load: start together later.
      const startAt = Date.now() + 3000;
      const runs = await children<WriteResult>(
        worker,
        Array.from({ length: processes }, (_, proc): WriteOptions => ({
          path,
          proc,
          sessions: 10,
          startAt,
          durationMs: config.twoProcessMs,
          ...(writer.lockingMode === undefined ? {} : { lockingMode: writer.lockingMode }),
        })),
      );
      for (const run of runs) {
        totals[name]!.ops += run.ops;
        totals[name]!.maxStallMs = Math.max(totals[name]!.maxStallMs, run.maxStallMs);
      }
    }
  }
  const seconds = config.twoProcessRounds * config.twoProcessMs / 1000;
  const summary = (name: keyof typeof WRITERS) => ({
    opsPerSecond: totals[name]!.ops / seconds,
    maxStallMs: totals[name]!.maxStallMs,
  });
  return {
    durationMs: config.twoProcessMs,
    rounds: config.twoProcessRounds,
    single: summary("single"),
    sessions: summary("sessions"),
    exclusive: summary("exclusive"),
    oneSession: summary("oneSession"),
    shared: summary("shared"),
  };
}

/** A dry-run cleanup over `count` idle session directories. */
async function cleanupScan(dir: string, count: number): Promise<Results["cleanup"]> {
  const root = join(dir, "cleanup");
  log(`making ${count} idle session directories`);
  await makeIdleSessions(root, count);
  await using store = new SessionStore({ root });
  log("cleanup scan (dry run)");
  const start = performance.now();
  const report = await store.cleanup({ dryRun: true });
  const seconds = (performance.now() - start) / 1000;
  if (report.scanned !== count) throw new Error(`Scanned ${report.scanned} of ${count}`);
  return { count, seconds, dirsPerSecond: count / seconds };
}

/** Resident memory per idle session and after touching many, in child processes. */
async function memory(
  dir: string,
  config: Config,
  variants: readonly SessionKvVariant[],
): Promise<Results["memory"]> {
  const result: Results["memory"] = {
    idleCount: config.idleCount,
    touchCount: config.touchCount,
    idle: {},
    touch: {},
  };
  for (const { id, driver, lockingMode } of variants) {
    log(`resident memory: ${SUBJECT_NAMES[id]}`);
    const idle: MemoryOptions = {
      root: join(dir, `idle-${id}`),
      driver,
      lockingMode,
      count: config.idleCount,
    };
    const [i] = await children<IdleMemoryResult>("idle-memory", [idle]);
    result.idle[id] = i!.perSessionBytes;
    const touch: MemoryOptions = {
      root: join(dir, `touch-${id}`),
      driver,
      lockingMode,
      count: config.touchCount,
    };
    const [t] = await children<TouchResult>("touch", [touch]);
    result.touch[id] = t!;
  }
  // The same touching with V8's young generation kept small, as a
  // memory-bound deployment would run it: how much of the peak is V8's.
  const node = variants.find((v) => v.id === "node");
  if (node !== undefined) {
    log(`resident memory: ${SUBJECT_NAMES.node}, ${SMALL_YOUNG_GENERATION}`);
    const [t] = await children<TouchResult>("touch", [{
      root: join(dir, "touch-node-small-young"),
      driver: node.driver,
      lockingMode: node.lockingMode,
      count: config.touchCount,
    }], [SMALL_YOUNG_GENERATION]);
    result.touchSmallYoung = t!;
  }
  return result;
}

async function machine(): Promise<Results["machine"]> {
  let cpu = `${Deno.build.arch} (model unknown)`;
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = info.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? cpu;
  } catch { /* not Linux */ }
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    loadAverage: Deno.loadavg(),
    memoryGiB: Deno.systemMemoryInfo().total / 2 ** 30,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
  };
}

function log(message: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

if (import.meta.main) {
  const { values: flags } = parseArgs({
    args: Deno.args,
    options: { quick: { type: "boolean", default: false } },
  });
  const config = flags.quick ? QUICK : FULL;
  let ffi: Results["versions"]["ffi"];
  try {
    const driver = loadFfiDriver();
    ffi = { sqlite: driver.sqliteVersion, library: driver.libraryPath };
  } catch (error) {
    ffi = { skipped: (error as Error).message };
    log(`ffi driver skipped: ${(error as Error).message}`);
  }
  const variants = SESSIONKV_VARIANTS.filter((v) => v.driver === "node" || !("skipped" in ffi));
  const started = new Date();
  const dir = await Deno.makeTempDir({ prefix: "sessionkv-compare-" });
  try {
    const results: Results = {
      mode: flags.quick ? "quick" : "full",
      date: started.toISOString(),
      machine: await machine(),
      versions: {
        deno: Deno.version.deno,
        v8: Deno.version.v8,
        typescript: Deno.version.typescript,
        node: nodeDriver.sqliteVersion,
        ffi,
      },
      sessions: config.sessions,
      rounds: config.rounds,
      budgetMs: config.budgetMs,
      workloads: [
        ...await operations(dir, config, 1, variants),
        ...await operations(dir, config, config.sessions, variants),
        ...await lifecycle(dir, config, variants),
      ],
      twoProcesses: await twoProcesses(dir, config),
      cleanup: await cleanupScan(dir, config.cleanupCount),
      memory: await memory(dir, config, variants),
      seconds: 0,
    };
    results.seconds = (Date.now() - started.getTime()) / 1000;
    const markdown = join(BENCH_DIR, "RESULTS.md");
    await Deno.writeTextFile(markdown, renderMarkdown(results));
    // Table widths are left to the formatter, so `deno fmt --check` stays clean.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", markdown] }).output();
    await Deno.writeTextFile(join(BENCH_DIR, "results.svg"), renderSvg(results));
    log(`wrote bench/RESULTS.md and bench/results.svg in ${results.seconds.toFixed(0)} s`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
