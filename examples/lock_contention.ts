/**
 * Why one SQLite file per conversation: this measures writers of different
 * conversations in one shared SQLite file (they queue on its single write
 * lock) against the same writers with a file per conversation.
 *
 * Each of `--workers` threads (Web Workers, one SQLite connection per file,
 * as separate processes would have) commits `--commits` small transactions,
 * each reading a conversation's last message and appending two ~2 KiB ones
 * (in a deferred transaction, SQLite's default `BEGIN`), in WAL mode
 * with `synchronous=NORMAL` and a 5 s `busy_timeout`, like the Python
 * original. It prints successful commits per second, latency per attempt
 * and how many failed with "database is locked", for both layouts.
 *
 * ```sh
 * deno run --allow-read --allow-write examples/lock_contention.ts \
 *   [--workers 4] [--commits 2000] [--root DIR]
 * ```
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { parseArgs } from "node:util";

interface Job {
  layout: "shared" | "per-session";
  root: string;
  worker: number;
  conversations: number;
  commits: number;
}

interface Result {
  latenciesMs: number[];
  busyErrors: number;
}

function open(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  db.exec(
    "CREATE TABLE IF NOT EXISTS messages (conversation TEXT, seq INTEGER, body TEXT, " +
      "PRIMARY KEY (conversation, seq))",
  );
  return db;
}

/** A worker's loop: `commits` transactions over its own conversations. */
function work(job: Job): Result {
  const ids = Array.from({ length: job.conversations }, (_, i) => `w${job.worker}-c${i}`);
  const dbs = new Map<string, DatabaseSync>();
  const dbFor = (id: string) => {
    const path = job.layout === "shared"
      ? join(job.root, "shared.sqlite3")
      : join(job.root, `${id}.sqlite3`);
    let db = dbs.get(path);
    if (db === undefined) dbs.set(path, db = open(path));
    return db;
  };
  for (const id of ids) dbFor(id); // Open everything before timing.
  const body = "x".repeat(2048);
  const latenciesMs: number[] = [];
  let busyErrors = 0;
  for (let i = 0; i < job.commits; i++) {
    const id = ids[i % ids.length]!;
    const db = dbFor(id);
    const started = performance.now();
    try {
      // A turn as an agent writes it: read the conversation's state, then
      // append the user message and the reply, in a deferred transaction
      // (SQLite's default). In a shared file another writer's commit between
      // the read and the write fails it at once with SQLITE_BUSY ("database
      // is locked"): busy_timeout cannot help, the snapshot is stale.
      db.exec("BEGIN");
      const row = db.prepare("SELECT max(seq) AS seq FROM messages WHERE conversation = ?")
        .get(id) as { seq: number | null };
      const seq = (row.seq ?? 0) + 1;
      const insert = db.prepare("INSERT INTO messages VALUES (?, ?, ?)");
      insert.run(id, seq, body);
      insert.run(id, seq + 1, body);
      db.exec("COMMIT");
    } catch (error) {
      if (!String((error as Error).message).includes("locked")) throw error;
      busyErrors++;
      try {
        db.exec("ROLLBACK");
      } catch { /* not in a transaction */ }
    }
    latenciesMs.push(performance.now() - started);
  }
  for (const db of dbs.values()) db.close();
  return { latenciesMs, busyErrors };
}

// In a worker: run the job we are sent, post the result back.
const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";
if (inWorker) {
  const scope = self as unknown as {
    onmessage: (event: MessageEvent<Job>) => void;
    postMessage(result: Result): void;
    close(): void;
  };
  scope.onmessage = (event) => {
    scope.postMessage(work(event.data));
    scope.close();
  };
}

async function run(layout: Job["layout"], root: string, workers: number, commits: number) {
  const dir = join(root, layout);
  await Deno.mkdir(dir, { recursive: true });
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: workers }, (_, worker) =>
      new Promise<Result>((resolve, reject) => {
        const w = new Worker(import.meta.url, { type: "module" });
        w.onmessage = (event: MessageEvent<Result>) => {
          resolve(event.data);
          w.terminate();
        };
        w.onerror = (event) => {
          event.preventDefault();
          reject(new Error(event.message));
          w.terminate();
        };
        w.postMessage({ layout, root: dir, worker, conversations: 25, commits } satisfies Job);
      })),
  );
  const seconds = (performance.now() - started) / 1000;
  const all = results.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  const busy = results.reduce((n, r) => n + r.busyErrors, 0);
  const q = (p: number) => all[Math.min(all.length - 1, Math.floor(p * all.length))]!;
  return {
    layout,
    commitsPerSecond: Math.round((all.length - busy) / seconds),
    p50: q(0.5),
    p99: q(0.99),
    max: all.at(-1)!,
    busyErrors: busy,
    attempts: all.length,
  };
}

if (import.meta.main && !inWorker) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      workers: { type: "string", default: "4" },
      commits: { type: "string", default: "2000" },
      root: { type: "string" },
    },
  });
  const workers = Number(values.workers);
  const commits = Number(values.commits);
  const root = values.root ?? await Deno.makeTempDir({ prefix: "sessionkv-locks-" });
  console.log(
    `${workers} writers x ${commits} commits, each to one of its 25 conversations (${root})\n`,
  );
  console.log("layout        commits/s  p50 ms  p99 ms  max ms  failed: database is locked");
  for (const layout of ["shared", "per-session"] as const) {
    const r = await run(layout, root, workers, commits);
    console.log(
      `${r.layout.padEnd(12)} ${String(r.commitsPerSecond).padStart(10)} ${
        r.p50.toFixed(2).padStart(7)
      } ${r.p99.toFixed(2).padStart(7)} ${
        r.max.toFixed(1).padStart(7)
      }  ${`${r.busyErrors} of ${r.attempts} (${Math.round(100 * r.busyErrors / r.attempts)} %)`}`,
    );
  }
  if (values.root === undefined) await Deno.remove(root, { recursive: true });
}
