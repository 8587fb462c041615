/**
 * The Deno KV backend against the SQLite-files backend and raw Deno KV, in
 * one run: set, get, getMany (10 keys), list (100 entries) and an atomic
 * commit (two sets and a sum), in operations per second. The Deno KV backend
 * and raw Deno KV share one `Deno.openKv(path)` file (under different
 * prefixes); the SQLite-files store lives in a directory beside it.
 *
 * Deno KV syncs every commit to disk, the files backend (WAL,
 * `synchronous=NORMAL`) does not, so writes are measured twice: on the
 * default temp directory (disk) and, when present, on tmpfs (`/dev/shm`),
 * where syncing costs nothing and the engines' own work shows.
 *
 * Run: `deno run -A --unstable-kv bench/denokv_backend_bench.ts [--quick]`.
 * Writes the tables to `bench/DENOKV.md`.
 */
import { join } from "node:path";
import { SessionStore } from "../mod.ts";
import { denoKvBackend } from "../denokv.ts";

const quick = Deno.args.includes("--quick");
/** How long each measurement runs. */
const BUDGET_MS = quick ? 300 : 1500;
const KEYS = 1000;
const value = { role: "user", text: "hello, how do I keep state per conversation?", n: 1 };
const keyOf = (i: number): Deno.KvKey => ["messages", i % KEYS];

/** The part of `Deno.Kv` every subject offers. */
type Kv = Pick<Deno.Kv, "set" | "get" | "getMany" | "list" | "atomic">;

interface Subject {
  name: string;
  kv: Kv;
  close(): Promise<void>;
}

interface Op {
  name: string;
  run(kv: Kv, i: number): Promise<unknown>;
}

const ops: Op[] = [
  { name: "set", run: (kv, i) => kv.set(keyOf(i), value) },
  { name: "get", run: (kv, i) => kv.get(keyOf(i)) },
  {
    name: "getMany (10)",
    run: (kv, i) => kv.getMany(Array.from({ length: 10 }, (_, j) => keyOf(i * 10 + j))),
  },
  {
    name: "list (100)",
    run: async (kv, i) => {
      let n = 0;
      const start = (i * 100) % (KEYS - 100);
      for await (
        const _ of kv.list({ start: keyOf(start), end: keyOf(start + 100) }, { batchSize: 100 })
      ) n++;
      if (n !== 100) throw new Error(`listed ${n}`);
    },
  },
  {
    name: "atomic (2 sets + sum)",
    run: (kv, i) =>
      kv.atomic().set(["a", i % KEYS], i).set(["b", i % KEYS], value).sum(["n"], 1n).commit(),
  },
];

async function measure(kv: Kv, op: Op): Promise<number> {
  // Warm up, then run for the budget.
  for (let i = 0; i < 20; i++) await op.run(kv, i);
  let n = 0;
  const start = performance.now();
  let elapsed = 0;
  while ((elapsed = performance.now() - start) < BUDGET_MS) await op.run(kv, n++);
  return n / (elapsed / 1000);
}

async function subjects(dir: string): Promise<Subject[]> {
  const file = await Deno.openKv(join(dir, "kv.sqlite3"));
  const raw = {
    // Raw Deno KV under its own prefix, in the same file.
    set: (k: Deno.KvKey, v: unknown) => file.set(["raw", ...k], v),
    get: (k: Deno.KvKey) => file.get(["raw", ...k]),
    getMany: (keys: Deno.KvKey[]) => file.getMany(keys.map((k) => ["raw", ...k])),
    list: (s: { start: Deno.KvKey; end: Deno.KvKey }, o?: Deno.KvListOptions) =>
      file.list({ start: ["raw", ...s.start], end: ["raw", ...s.end] }, o),
    atomic: () => {
      const op = file.atomic();
      const wrapped = {
        set: (k: Deno.KvKey, v: unknown) => (op.set(["raw", ...k], v), wrapped),
        sum: (k: Deno.KvKey, n: bigint) => (op.sum(["raw", ...k], n), wrapped),
        commit: () => op.commit(),
      };
      return wrapped;
    },
  } as unknown as Kv;
  const denoKvStore = new SessionStore({ backend: denoKvBackend(file) });
  const denoKvSession = await denoKvStore.openKv("bench", "session");
  const filesStore = new SessionStore({ root: join(dir, "files") });
  const filesSession = await filesStore.openKv("bench", "session");
  return [
    { name: "raw Deno KV", kv: raw, close: () => Promise.resolve() },
    {
      name: "denoKvBackend",
      kv: denoKvSession as unknown as Kv,
      async close() {
        denoKvSession.close();
        await denoKvStore.close();
        file.close();
      },
    },
    {
      name: "SQLite files",
      kv: filesSession as unknown as Kv,
      async close() {
        filesSession.close();
        await filesStore.close();
      },
    },
  ];
}

async function run(where: string, base: string | undefined): Promise<string> {
  const dir = await Deno.makeTempDir({
    prefix: "sessionkv-denokv-bench-",
    ...(base === undefined ? {} : { dir: base }),
  });
  try {
    const all = await subjects(dir);
    for (const s of all) for (let i = 0; i < KEYS; i++) await s.kv.set(keyOf(i), value);
    const rows: string[] = [];
    for (const op of ops) {
      const rates: number[] = [];
      for (const s of all) rates.push(await measure(s.kv, op));
      const [raw, backend, files] = rates as [number, number, number];
      rows.push(
        `| ${op.name} | ${fmt(raw)} | ${fmt(backend)} | ${fmt(files)} | ${
          (backend / raw).toFixed(2)
        }× | ${(backend / files).toFixed(2)}× |`,
      );
      console.log(`${where}: ${rows.at(-1)}`);
    }
    for (const s of all) await s.close();
    return [
      `### ${where}`,
      "",
      "| op | raw Deno KV ops/s | denoKvBackend ops/s | SQLite files ops/s | backend / raw | backend / files |",
      "| --- | ---: | ---: | ---: | ---: | ---: |",
      ...rows,
      "",
    ].join("\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function fmt(rate: number): string {
  return Math.round(rate).toLocaleString("en-US");
}

let tmpfs: string | undefined;
try {
  if (Deno.statSync("/dev/shm").isDirectory) tmpfs = "/dev/shm";
} catch { /* none */ }

const sections = [await run("temp directory (disk)", undefined)];
if (tmpfs !== undefined) sections.push(await run("tmpfs (/dev/shm)", tmpfs));

const report = `# Deno KV backend: ops/s against raw Deno KV and the SQLite-files backend

Generated by \`deno run -A --unstable-kv bench/denokv_backend_bench.ts\` on
${
  new Date().toISOString().slice(0, 10)
} (Deno ${Deno.version.deno}, ${Deno.build.os}/${Deno.build.arch},
${navigator.hardwareConcurrency} CPUs). One session, 1000 small entries (an object of ~60
bytes), sequential calls, ${BUDGET_MS} ms per cell. The Deno KV backend and raw Deno KV share
one \`Deno.openKv(path)\` file; the SQLite-files backend (\`SessionStore({ root })\`, node:sqlite,
WAL) writes its own file in the same directory.

What each backend operation costs in Deno KV round trips:

- \`get\`, \`getMany\` of up to 9 keys: one \`getMany\` (the session's meta record read with the
  keys, in one snapshot);
- \`getMany\` of 10 keys, \`list\`: the read plus one \`get\` of the meta record (to confirm that
  no commit came between);
- \`set\`, \`atomic\`: one \`getMany\` (meta record and touched keys) and one atomic operation
  (checked against the meta record's versionstamp; sum computed client-side).

Deno KV syncs every commit to disk, so on a disk writes of both Deno KV columns are bound by
the sync; the tmpfs table shows the engines' own costs.

${sections.join("\n")}`;

const markdown = new URL("./DENOKV.md", import.meta.url).pathname;
await Deno.writeTextFile(markdown, report);
// Table widths are left to the formatter, so `deno fmt --check` stays clean.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", markdown] }).output();
console.log("wrote bench/DENOKV.md");
