/**
 * The PostgreSQL backend beside SQLite files, in one run, and the LangGraph
 * saver on PostgreSQL beside LangGraph's own `PostgresSaver`
 * (`@langchain/langgraph-checkpoint-postgres`) on the same server. Writes the
 * tables to `bench/POSTGRES.md` and prints them.
 *
 * Run: `SESSIONKV_PG_URL=postgres://... deno run -A --unstable-kv bench/postgres_bench.ts`
 * (`.ci/postgres.sh start` prints a URL). `SECONDS=n` sets the time per case
 * (default 3). Each case runs in its own schema, dropped afterwards.
 *
 * The LangGraph workload is `langgraph_bench.ts`'s: a checkpoint of 20 chat
 * messages and a step counter, each step a `put` then a `getTuple` of the
 * thread's latest checkpoint, a new thread every 100 steps. Bytes per step are
 * the growth of the saver's tables (`pg_total_relation_size`, with TOAST and
 * indexes, after `VACUUM`) over 500 steps of one thread after 50 warm-up steps:
 * once with the messages rewritten every step, once with only the counter
 * changing. For SQLite files, the growth of the session's files after
 * `close()` (as `langgraph_bench.ts` measures).
 */
import type { BaseCheckpointSaver } from "@langchain/langgraph-checkpoint";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import postgres from "postgres";
import { join } from "node:path";
import { SessionStore } from "../mod.ts";
import { SessionCheckpointSaver } from "../langgraph.ts";
import { dropSchema, postgresBackend } from "../postgres.ts";
import { Steps } from "./_langgraph_workload.ts";

const url: string = Deno.env.get("SESSIONKV_PG_URL") ?? "";
if (url === "") {
  console.error("Set SESSIONKV_PG_URL (e.g. the URL `.ci/postgres.sh start` prints)");
  Deno.exit(2);
}
/** Other work on the machine skews the numbers: reported with them. */
const load = Deno.loadavg()[0]!.toFixed(2);
const SECONDS = Number(Deno.env.get("SECONDS") ?? 3);
const dir = await Deno.makeTempDir({ prefix: "sessionkv-pg-bench-" });
const admin = postgres(url, { max: 1, onnotice: () => {} });
const schemas: string[] = [];
const newSchema = (name: string) => {
  const schema = `bench_${name}_${crypto.randomUUID().slice(0, 8)}`;
  schemas.push(schema);
  return schema;
};

/**
 * Runs `op` after a warm-up for `SECONDS` (and at least 200 times); returns
 * ops/s, or NaN (reported as "failed") when an operation throws.
 */
async function rate(op: (i: number) => Promise<unknown>, warmup = 100): Promise<number> {
  try {
    for (let i = 0; i < warmup; i++) await op(i);
    let n = 0;
    const start = performance.now();
    while (performance.now() - start < SECONDS * 1000 || n < 200) await op(warmup + n++);
    return n / ((performance.now() - start) / 1000);
  } catch (error) {
    console.error("case failed:", error);
    return NaN;
  }
}

/** Like {@linkcode rate} with `workers` concurrent loops, each on its own `i` sequence. */
async function concurrentRate(
  workers: number,
  op: (worker: number, i: number) => Promise<unknown>,
): Promise<number> {
  for (let w = 0; w < workers; w++) await op(w, 0);
  let n = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: workers }, async (_, w) => {
    for (let i = 1; performance.now() - start < SECONDS * 1000; i++) {
      await op(w, i);
      n++;
    }
  }));
  return n / ((performance.now() - start) / 1000);
}

const kvRows: Record<string, Record<string, number>> = {};
const record = (
  table: Record<string, Record<string, number>>,
  row: string,
  col: string,
  n: number,
) => {
  (table[row] ??= {})[col] = n;
  console.log(`${row} | ${col}: ${Math.round(n)}/s`);
};

const lgRows: Record<string, Record<string, number>> = {};

/** Every case; the schemas and files it makes are removed afterwards, also on failure. */
async function measureAll(): Promise<void> {
  // ---------------------------------------------------------------- KV ops

  const KEYS = 1000;
  const value = { role: "user", text: "hello, how do I keep state per conversation?", n: 1 };
  const keyOf = (i: number) => ["messages", i % KEYS] as const;

  interface Target {
    name: string;
    store: SessionStore;
  }

  const kvSchema = newSchema("kv");
  const targets: Target[] = [
    { name: "SQLite files", store: new SessionStore({ root: join(dir, "files") }) },
    {
      name: "PostgreSQL",
      store: new SessionStore({ backend: postgresBackend({ url, schema: kvSchema, max: 16 }) }),
    },
  ];

  for (const { name, store } of targets) {
    using kv = await store.openKv("bench", "session");
    for (let i = 0; i < KEYS; i++) await kv.set(keyOf(i), value);
    record(kvRows, "set", name, await rate((i) => kv.set(keyOf(i), value)));
    record(kvRows, "get", name, await rate((i) => kv.get(keyOf(i))));
    record(
      kvRows,
      "getMany (10 keys)",
      name,
      await rate((i) =>
        kv.getMany(
          Array.from({ length: 10 }, (_, j) => keyOf(i * 10 + j)),
        )
      ),
    );
    record(
      kvRows,
      "list (100 entries)",
      name,
      await rate(async (i) => {
        let n = 0;
        for await (const _ of kv.list({ prefix: ["messages"] }, { limit: 100 })) n++;
        return n + i;
      }),
    );
    record(
      kvRows,
      "atomic check + set",
      name,
      await rate(async (i) => {
        const entry = await kv.get(keyOf(i));
        return await kv.atomic().check(entry).set(keyOf(i), value).commit();
      }),
    );
    record(kvRows, "atomic sum", name, await rate(() => kv.atomic().sum(["n"], 1n).commit()));
    const views = await Promise.all(
      Array.from({ length: 16 }, (_, w) => store.openKv("bench", `parallel-${w}`)),
    );
    record(
      kvRows,
      "set, 16 sessions in parallel",
      name,
      await concurrentRate(16, (w, i) => views[w]!.set(keyOf(i), value)),
    );
    for (const v of views) v.close();
  }
  for (const { store } of targets) await store.close();

  // ---------------------------------------------------------------- LangGraph

  /** The total size of a schema's tables (heap, TOAST, indexes) after VACUUM. */
  async function schemaBytes(schema: string): Promise<number> {
    const tables = await admin.unsafe(
      `SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r'`,
      [schema],
    );
    for (const t of tables) await admin.unsafe(`VACUUM ${t.name}`);
    const [row] = await admin.unsafe(
      `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS n FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`,
      [schema],
    );
    return Number(row!.n);
  }

  async function dirBytes(path: string): Promise<number> {
    let total = 0;
    for await (const e of Deno.readDir(path)) {
      if (e.isFile) total += (await Deno.stat(join(path, e.name))).size;
    }
    return total;
  }

  interface SaverKind {
    name: string;
    /** Makes a saver; `close` ends it; `bytes` measures its tables (PostgreSQL). */
    make(): Promise<
      { saver: BaseCheckpointSaver; close(): Promise<void>; bytes?(): Promise<number> }
    >;
  }

  const kinds: SaverKind[] = [
    {
      name: "SessionCheckpointSaver, PostgreSQL",
      make() {
        const schema = newSchema("lg_ours");
        const store = new SessionStore({ backend: postgresBackend({ url, schema, max: 4 }) });
        return Promise.resolve({
          saver: new SessionCheckpointSaver(store, { botId: "bench" }),
          close: () => store.close(),
          bytes: () => schemaBytes(schema),
        });
      },
    },
    {
      name: "PostgresSaver (@langchain/langgraph-checkpoint-postgres)",
      async make() {
        const schema = newSchema("lg_upstream");
        await admin.unsafe(`CREATE SCHEMA "${schema}"`);
        const saver = PostgresSaver.fromConnString(url, { schema });
        await saver.setup();
        return { saver, close: () => saver.end(), bytes: () => schemaBytes(schema) };
      },
    },
    {
      name: "SessionCheckpointSaver, SQLite files",
      async make() {
        const store = new SessionStore({ root: await Deno.makeTempDir({ dir }) });
        return {
          saver: new SessionCheckpointSaver(store, { botId: "bench" }),
          close: () => store.close(),
        };
      },
    },
  ];

  /** Bytes per step on SQLite files, as `langgraph_bench.ts` measures them: files closed. */
  async function sqliteBytesPerStep(changed: string[]): Promise<number> {
    const root = await Deno.makeTempDir({ dir });
    let loop: Steps | undefined;
    const run = async (count: number) => {
      const store = new SessionStore({ root });
      const saver = new SessionCheckpointSaver(store, { botId: "bench" });
      if (loop === undefined) loop = new Steps(saver, "bytes", Infinity);
      else loop.saver = saver;
      for (let i = 0; i < count; i++) await loop.put(changed);
      let path = "";
      for await (const info of store.sessions({ botId: "bench" })) path = info.path;
      await store.close(); // checkpoints the WAL into the database file
      return await dirBytes(path);
    };
    const before = await run(50);
    return ((await run(500)) - before) / 500;
  }

  for (const kind of kinds) {
    // Throughput.
    {
      const made = await kind.make();
      const loop = new Steps(made.saver, "t");
      record(
        lgRows,
        kind.name,
        "put + getTuple pairs/s",
        await rate(() => loop.pair(["messages", "counter"]), 200),
      );
      await made.close();
    }
    // Bytes per step.
    for (
      const [label, changed] of [["bytes/step, 20 messages rewritten", ["messages", "counter"]], [
        "bytes/step, only a counter changes",
        ["counter"],
      ]] as const
    ) {
      const made = await kind.make();
      if (made.bytes === undefined) {
        await made.close();
        record(lgRows, kind.name, label, await sqliteBytesPerStep([...changed]));
        continue;
      }
      const loop = new Steps(made.saver, "bytes", Infinity);
      for (let i = 0; i < 50; i++) await loop.put([...changed]);
      const before = await made.bytes();
      for (let i = 0; i < 500; i++) await loop.put([...changed]);
      const after = await made.bytes();
      record(lgRows, kind.name, label, (after - before) / 500);
      await made.close();
    }
  }
}

const [server] = await admin.unsafe(
  "SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sc",
);
try {
  await measureAll();
} finally {
  for (const schema of schemas) await dropSchema({ url, schema }).catch(() => undefined);
  await admin.end();
  await Deno.remove(dir, { recursive: true });
}

// ---------------------------------------------------------------- report

const fmt = (n: number | undefined) =>
  n === undefined ? "—" : Number.isNaN(n) ? "failed" : Math.round(n).toLocaleString("en-US");
const ratio = (a: number | undefined, b: number | undefined) => {
  const r = (a ?? NaN) / (b ?? NaN);
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : "—";
};
const lines = [
  "# PostgreSQL backend: benchmark",
  "",
  `Generated by \`deno run -A --unstable-kv bench/postgres_bench.ts\` on ${
    new Date().toISOString().slice(0, 10)
  }:`,
  `Deno ${Deno.version.deno}, PostgreSQL ${server!.version} on 127.0.0.1 (\`synchronous_commit=${
    server!.sc
  }\`,`,
  `as \`.ci/postgres.sh\` starts it: commits do not wait for the WAL flush, like SQLite's WAL with`,
  "`synchronous=NORMAL` that the files backend uses), " +
  `${navigator.hardwareConcurrency} cores (load average ${load} before the run), ${SECONDS} s per case.`,
  "",
  "## SessionKv operations per second (one session unless noted)",
  "",
  "| operation | SQLite files | PostgreSQL | PostgreSQL / SQLite |",
  "| --- | ---: | ---: | ---: |",
  ...Object.entries(kvRows).map(([op, r]) =>
    `| ${op} | ${fmt(r["SQLite files"])} | ${fmt(r.PostgreSQL)} | ${
      ratio(r.PostgreSQL, r["SQLite files"])
    } |`
  ),
  "",
  "Each PostgreSQL operation is one statement: a commit is one call of `kv_commit`",
  "(a `sum` reads first, so two). The 16-session row runs 16 writers at once (pool of 16).",
  "",
  "## LangGraph checkpointer: put + getTuple, 20 chat messages",
  "",
  "| saver | put + getTuple pairs/s | bytes/step, 20 messages rewritten | bytes/step, only a counter changes |",
  "| --- | ---: | ---: | ---: |",
  ...Object.entries(lgRows).map(([name, r]) =>
    `| ${name} | ${fmt(r["put + getTuple pairs/s"])} | ${
      fmt(r["bytes/step, 20 messages rewritten"])
    } | ${fmt(r["bytes/step, only a counter changes"])} |`
  ),
  "",
  "Bytes per step on PostgreSQL: growth of the saver's tables (heap, TOAST, indexes; after",
  "`VACUUM`) over 500 steps of one thread; on SQLite files: growth of the session's files.",
  "",
];
const report = lines.join("\n");
const out = new URL("./POSTGRES.md", import.meta.url);
await Deno.writeTextFile(out, report);
// As `deno fmt` lays it out, so the repository's format check stays clean.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", out.pathname] }).output();
console.log("\n" + report);
