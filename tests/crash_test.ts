/**
 * Crash safety: a child process writes to one session (single sets, atomics
 * of three keys with a sum, compare-and-set chains) and prints every commit
 * whose promise resolved; the test kills it with SIGKILL at a random moment,
 * over and over on the same file, and after every kill checks that
 *
 * - `PRAGMA integrity_check` is `ok`,
 * - every acknowledged commit is there,
 * - no atomic is visible in part (its keys agree and `["total"]` counts
 *   exactly the groups present),
 * - the compare-and-set chain has no gap.
 *
 * The file is read behind the library's back with `node:sqlite`: the
 * original read-only where SQLite allows that (WAL), and always a copy of the
 * database with its `-wal` / `-journal` (a hot rollback journal cannot be
 * replayed by a read-only connection), so the next child recovers the crashed
 * file itself. The `wal` setting and the locking mode are drawn at random for
 * every run, so runs also switch the journal mode of a crashed file, and
 * recover a WAL written without `-shm` (exclusive locking) with one.
 *
 * SESSIONKV_CRASH_SEED reproduces a run's choices; SESSIONKV_CRASH_KILLS sets
 * the number of kills (default 50, shared between the drivers).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { KvU64, SessionStore } from "../mod.ts";
import { decodeKey } from "../src/codec/key_codec.ts";
import { decodeValue } from "../src/codec/value_codec.ts";
import { testDrivers } from "./_drivers.ts";
import { mulberry32, withTempDir } from "./_helpers.ts";

const KILLS = Number(Deno.env.get("SESSIONKV_CRASH_KILLS") ?? 50);
const SEED = Number(Deno.env.get("SESSIONKV_CRASH_SEED") ?? Date.now() % 2 ** 31);
const WRITER = new URL("./fixtures/crash_writer.ts", import.meta.url).pathname;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What the children acknowledged, over every run. */
interface Acked {
  singles: number[];
  groups: number[];
  cas: number;
}

/** What a run of the writer did before it was killed. */
interface Run {
  ready: boolean;
  lines: number;
  stderr: string;
  status: Deno.CommandStatus;
}

/**
 * Starts the writer, kills it with SIGKILL after `killAfter` (ms from the
 * start, or from "ready" when `afterReady`), and records its acknowledgements.
 */
async function runAndKill(
  args: string[],
  killAfter: number,
  afterReady: boolean,
  acked: Acked,
): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", WRITER, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let ready = false;
  let lines = 0;
  let onReady: () => void = () => {};
  const readyPromise = new Promise<void>((resolve) => onReady = resolve);
  const reading = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop()!; // A line cut by the kill is not an acknowledgement.
      for (const line of parts) {
        lines++;
        const [kind, n] = line.split(" ");
        if (kind === "ready") {
          ready = true;
          onReady();
        } else if (kind === "s") acked.singles.push(Number(n));
        else if (kind === "g") acked.groups.push(Number(n));
        else if (kind === "c") acked.cas = Math.max(acked.cas, Number(n));
        else throw new Error(`Unexpected line from the writer: ${line}`);
      }
    }
    onReady();
  })();
  const stderr = new Response(child.stderr).text();
  if (afterReady) await readyPromise;
  await sleep(killAfter);
  try {
    child.kill("SIGKILL");
  } catch { /* it exited: the status says why */ }
  const status = await child.status;
  await reading;
  return { ready, lines, stderr: await stderr, status };
}

/** A row of the kv table, decoded. */
interface Row {
  key: unknown[];
  value: unknown;
}

function readRows(db: DatabaseSync): Row[] {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE name = 'kv'").all();
  if (tables.length === 0) return [];
  return db.prepare("SELECT k, v, enc FROM kv").all().map((r) => ({
    key: decodeKey(r.k as Uint8Array),
    value: decodeValue(Number(r.enc), r.v as Uint8Array),
  }));
}

function integrity(db: DatabaseSync): string {
  return db.prepare("PRAGMA integrity_check").all().map((r) => String(r.integrity_check)).join(
    "; ",
  );
}

/**
 * Reads the crashed session without touching it: integrity check on the
 * original (read-only) when there is no rollback journal, then integrity check
 * and rows of a copy, which SQLite recovers as the next opener would.
 */
async function inspect(dir: string, scratch: string): Promise<{ rows: Row[]; exists: boolean }> {
  const db = join(dir, "kv.sqlite3");
  try {
    await Deno.lstat(db);
  } catch {
    return { rows: [], exists: false };
  }
  let hasJournal = true;
  try {
    await Deno.lstat(`${db}-journal`);
  } catch {
    hasJournal = false;
  }
  if (!hasJournal) {
    const original = new DatabaseSync(db, { readOnly: true });
    try {
      equal(integrity(original), "ok", "integrity_check of the crashed file (read-only)");
    } finally {
      original.close();
    }
  }
  await Deno.remove(scratch, { recursive: true }).catch(() => undefined);
  await Deno.mkdir(scratch, { recursive: true });
  for (const suffix of ["", "-wal", "-journal"]) {
    await Deno.copyFile(`${db}${suffix}`, join(scratch, `kv.sqlite3${suffix}`)).catch(
      (error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      },
    );
  }
  const copy = new DatabaseSync(join(scratch, "kv.sqlite3"));
  try {
    equal(integrity(copy), "ok", "integrity_check of the recovered copy");
    return { rows: readRows(copy), exists: true };
  } finally {
    copy.close();
  }
}

/** Checks the invariants; returns counts for the log. */
function verify(rows: Row[], acked: Acked): { groups: number; singles: number; cas: number } {
  const singles = new Set<number>();
  const groups = new Map<number, Map<string, unknown>>();
  let total: bigint | undefined;
  let cas = 0;
  const casLog = new Set<number>();
  for (const { key, value } of rows) {
    switch (key[0]) {
      case "s": {
        const seq = key[1] as number;
        equal((value as { seq: number }).seq, seq, `["s", ${seq}] holds its own value`);
        singles.add(seq);
        break;
      }
      case "g": {
        const g = key[1] as number;
        const parts = groups.get(g) ?? new Map<string, unknown>();
        parts.set(key[2] as string, value);
        groups.set(g, parts);
        break;
      }
      case "total":
        ok(value instanceof KvU64, "the sum target holds a KvU64");
        total = value.value;
        break;
      case "cas":
        cas = value as number;
        break;
      case "caslog":
        casLog.add(key[1] as number);
        break;
      default:
        throw new Error(`Unexpected key ${Deno.inspect(key)}`);
    }
  }
  for (const [g, parts] of groups) {
    deepEqual(
      [parts.get("a"), parts.get("b"), (parts.get("c") as { g?: number } | undefined)?.g],
      [g, g, g],
      `group ${g} is all there or not at all`,
    );
  }
  equal(total ?? 0n, BigInt(groups.size), '["total"] counts exactly the groups present');
  const missingSingles = acked.singles.filter((s) => !singles.has(s));
  deepEqual(missingSingles.slice(0, 10), [], "acknowledged single sets are present");
  const missingGroups = acked.groups.filter((g) => !groups.has(g));
  deepEqual(missingGroups.slice(0, 10), [], "acknowledged atomics are present");
  ok(cas >= acked.cas, `the CAS chain reached ${cas}, acknowledged up to ${acked.cas}`);
  equal(casLog.size, cas, "the CAS log has one entry per step");
  for (let n = 1; n <= cas; n++) ok(casLog.has(n), `CAS step ${n} is logged`);
  return { groups: groups.size, singles: singles.size, cas };
}

const kills = Math.max(1, Math.ceil(KILLS / testDrivers.length));

for (const driver of testDrivers) {
  Deno.test(`[${driver}] ${kills} SIGKILLs at random points lose no acknowledged commit, split no atomic and leave integrity_check ok`, async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      const dir = join(root, "bot", "crash");
      const rng = mulberry32(SEED + (driver === "ffi" ? 1 : 0));
      const acked: Acked = { singles: [], groups: [], cas: 0 };
      const modes = { wal: 0, rollback: 0, exclusive: 0, beforeReady: 0 };
      let lines = 0;
      let counts = { groups: 0, singles: 0, cas: 0 };
      for (let run = 0; run < kills; run++) {
        const wal = rng() < 0.5;
        const exclusive = rng() < 0.5;
        const beforeReady = rng() < 0.2;
        // Before "ready": anywhere in start-up, open, recovery and migration;
        // after: in the middle of the writes (and checkpoints).
        const killAfter = Math.floor(beforeReady ? rng() * 700 : rng() * 250);
        const args = [
          root,
          driver,
          wal ? "1" : "0",
          String((run + 1) * 10_000_000),
          exclusive ? "1" : "0",
        ];
        const result = await runAndKill(args, killAfter, !beforeReady, acked);
        const what =
          `run ${run} (seed ${SEED}, wal ${wal}, exclusive ${exclusive}, kill after ${killAfter} ms${
            beforeReady ? "" : " past ready"
          })`;
        equal(
          result.status.signal,
          "SIGKILL",
          `${what}: the writer died on its own: ${result.stderr}`,
        );
        modes[wal ? "wal" : "rollback"]++;
        if (exclusive) modes.exclusive++;
        if (!result.ready) modes.beforeReady++;
        lines += result.lines;
        const { rows, exists } = await inspect(dir, join(tmp, "scratch"));
        if (!exists) {
          equal(acked.singles.length + acked.groups.length + acked.cas, 0, what);
          continue;
        }
        try {
          counts = verify(rows, acked);
        } catch (error) {
          (error as Error).message = `${what}: ${(error as Error).message}`;
          throw error;
        }
      }
      // The library itself reads back every acknowledged commit afterwards.
      await using store = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "crash");
      for (const s of acked.singles) equal((await kv.get(["s", s])).versionstamp?.length, 20);
      for (const g of acked.groups) equal((await kv.get(["g", g, "a"])).value, g);
      equal(((await kv.get<KvU64>(["total"])).value?.value ?? 0n) >= acked.groups.length, true);
      kv.close();
      await store.close();
      const after = new DatabaseSync(join(dir, "kv.sqlite3"), { readOnly: true });
      equal(integrity(after), "ok");
      after.close();
      console.log(
        `[${driver}] seed ${SEED}: ${kills} kills (${modes.wal} wal, ${modes.rollback} rollback, ` +
          `${modes.exclusive} exclusive, ` +
          `${modes.beforeReady} before the session was open); ${lines} lines read; acknowledged ` +
          `${acked.singles.length} sets, ${acked.groups.length} atomics, CAS up to ${acked.cas}; ` +
          `on disk ${counts.singles} sets, ${counts.groups} atomics, CAS ${counts.cas}`,
      );
    });
  });
}
