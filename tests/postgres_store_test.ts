/**
 * `SessionStore` on the PostgreSQL backend against a real server: the schema,
 * `sessions()`, `deleteSession()`, `cleanup()` in pages, leases within a
 * process, across "hosts" (stores with their own pools) and after a killed
 * holder, expiry sweeping, per-session locking and error mapping. Each test
 * uses its own schema. Ignored when `SESSIONKV_PG_URL` is unset.
 */
import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { type CleanupProgress, LeaseTimeoutError, SessionBusyError, SessionStore } from "../mod.ts";
import { PostgresBackend, postgresBackend, PostgresUnavailableError } from "../postgres.ts";
import type { CleanupRun, LocalSession } from "../src/backend.ts";
import { Child } from "./fixtures/cleanup_util.ts";
import {
  ageSessions,
  DAY_MS,
  noServer,
  PG_URL,
  pgStore,
  rowsOf,
  sleep,
  withSchema,
} from "./fixtures/postgres_util.ts";

const OLD = 30 * DAY_MS;

function pgTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `[postgres] ${name}`, ignore: noServer, fn });
}

/** `bot/session` of every session listed, in the order listed. */
async function listed(store: SessionStore, botId?: string): Promise<string[]> {
  const out: string[] = [];
  for await (const s of store.sessions(botId === undefined ? {} : { botId })) {
    out.push(`${s.botId}/${s.sessionId}`);
  }
  return out;
}

async function touch(store: SessionStore, bot: string, ...sessions: string[]): Promise<void> {
  for (const s of sessions) {
    using kv = await store.openKv(bot, s);
    await kv.set(["touched"], s);
  }
}

pgTest(
  "concurrent backends create the schema once, and every primary key leads with the session",
  async () => {
    await withSchema(async (schema, sql) => {
      const stores = Array.from({ length: 5 }, () => pgStore(schema));
      try {
        await Promise.all(stores.map((s, i) => touch(s, "bot", `s${i}`)));
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
      const keys = await sql.unsafe(
        `SELECT c.relname AS table, array_agg(a.attname::text ORDER BY k.i) AS columns
         FROM pg_index x
         JOIN pg_class c ON c.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, i)
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE n.nspname = $1 AND x.indisprimary
        GROUP BY c.relname ORDER BY c.relname`,
        [schema],
      );
      deepEqual(keys.map((r) => [r.table, r.columns]), [
        ["kv", ["bot_id", "session_id", "k"]],
        ["leases", ["bot_id", "session_id"]],
        ["queue", ["bot_id", "session_id", "id"]],
        ["sessions", ["bot_id", "session_id"]],
      ]);
    });
  },
);

pgTest("a session's data survives reopening the store and versionstamps keep growing", async () => {
  await withSchema(async (schema) => {
    let stamp: string;
    {
      await using store = pgStore(schema);
      using kv = await store.openKv("bot", "s1");
      stamp = (await kv.set(["k"], "v")).versionstamp;
    }
    await using store = pgStore(schema);
    using kv = await store.openKv("bot", "s1");
    deepEqual(await kv.get(["k"]), { key: ["k"], value: "v", versionstamp: stamp });
    ok((await kv.set(["k"], "w")).versionstamp > stamp);
  });
});

pgTest(
  "sessions() lists from the database: ids as given, by bot, sizes, activity and leases held elsewhere",
  async () => {
    await withSchema(async (schema) => {
      const ids = ["plain", "with\0nul", "emoji 🦕", "../../etc"];
      await using writer = pgStore(schema);
      const before = Date.now();
      for (const id of ids) await touch(writer, "bot-a", id);
      await touch(writer, "bot-b", "other");
      {
        using kv = await writer.openKv("bot-a", "plain");
        await kv.set(["big"], crypto.getRandomValues(new Uint8Array(10_000))); // incompressible
      }
      await using holder = pgStore(schema);
      await using lease = await holder.acquire("bot-a", "emoji 🦕");

      await using reader = pgStore(schema); // knows nothing of the others
      const all = await Array.fromAsync(reader.sessions());
      deepEqual(
        all.map((s) => `${s.botId}/${s.sessionId}`),
        [...ids.map((id) => `bot-a/${id}`).sort(byUtf8), "bot-b/other"],
      );
      for (const s of all) {
        ok(s.lastActivity.getTime() >= before - 5 && s.lastActivity.getTime() <= Date.now());
        equal(s.open, s.sessionId === "emoji 🦕", `${s.sessionId} open`);
        ok(s.path.includes(schema), s.path);
      }
      const plain = all.find((s) => s.sessionId === "plain")!;
      const other = all.find((s) => s.sessionId === "other")!;
      ok(
        plain.sizeBytes > 10_000 && other.sizeBytes < 1000,
        `${plain.sizeBytes} ${other.sizeBytes}`,
      );
      deepEqual(await listed(reader, "bot-b"), ["bot-b/other"]);
      deepEqual(await listed(reader, "nobody"), []);
      await lease.release();
    });
  },
);

function byUtf8(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

pgTest(
  "deleteSession() removes every row of the session, waits out a lease held elsewhere and is false when absent",
  async () => {
    await withSchema(async (schema, sql) => {
      await using store = pgStore(schema, {}, { busyTimeoutMs: 300 });
      {
        using kv = await store.openKv("bot", "doomed");
        await kv.set(["a"], 1);
        await kv.enqueue("message", { delay: 60_000 });
      }
      await touch(store, "bot", "kept");
      await using other = pgStore(schema);
      const lease = await other.acquire("bot", "doomed");
      const start = Date.now();
      await rejects(store.deleteSession("bot", "doomed"), SessionBusyError);
      ok(Date.now() - start >= 250, "waited for busyTimeoutMs");
      deepEqual(await rowsOf(sql, schema, "bot", "doomed"), {
        sessions: 1,
        kv: 1,
        queue: 1,
        leases: 1,
      });
      await lease.release();
      equal(await store.deleteSession("bot", "doomed"), true);
      deepEqual(await rowsOf(sql, schema, "bot", "doomed"), {
        sessions: 0,
        kv: 0,
        queue: 0,
        leases: 0,
      });
      equal(await store.deleteSession("bot", "doomed"), false);
      deepEqual(await listed(store), ["bot/kept"]);
      // A view still open starts a new, empty session.
      using kv = await store.openKv("bot", "doomed");
      equal((await kv.get(["a"])).value, null);
    });
  },
);

pgTest(
  "cleanup() deletes idle sessions in pages of 500 and keeps active, leased and in-use ones; a dry run deletes nothing",
  async () => {
    await withSchema(async (schema, sql) => {
      await using store = pgStore(schema, { max: 8 });
      const idle = Array.from({ length: 1200 }, (_, i) => `idle-${String(i).padStart(4, "0")}`);
      for (let i = 0; i < idle.length; i += 50) {
        await Promise.all(idle.slice(i, i + 50).map((id) => touch(store, "bot", id)));
      }
      await touch(store, "bot", "active", "leased", "viewing");
      await using host2 = pgStore(schema);
      const lease = await host2.acquire("bot", "leased");
      using viewing = await store.openKv("bot", "viewing");
      await ageSessions(sql, schema, OLD);
      await touch(store, "bot", "active");

      const progress: CleanupProgress[] = [];
      const dry = await store.cleanup({
        olderThanDays: 7,
        dryRun: true,
        onProgress: (p) => progress.push(p),
      });
      deepEqual(
        { ...dry, cutoff: undefined, bytesFreed: undefined },
        {
          scanned: 1202,
          deleted: 1200,
          skippedInUse: 2,
          cutoff: undefined,
          bytesFreed: undefined,
          dryRun: true,
          errors: [],
        },
      );
      ok(dry.bytesFreed > 1200 * 10, `bytes ${dry.bytesFreed}`);
      equal(progress.length, 1202);
      deepEqual(progress.at(-1), { scanned: 1202, deleted: 1200, skippedInUse: 2 });
      equal((await listed(store)).length, 1203, "a dry run deletes nothing");

      const report = await store.cleanup({ olderThanDays: 7 });
      deepEqual(
        { scanned: report.scanned, deleted: report.deleted, skipped: report.skippedInUse },
        { scanned: 1202, deleted: 1200, skipped: 2 },
      );
      equal(report.bytesFreed, dry.bytesFreed, "the dry run's estimate is what was freed");
      deepEqual(report.errors, []);
      deepEqual(await listed(store), ["bot/active", "bot/leased", "bot/viewing"]);
      const [row] = await sql.unsafe(`SELECT count(*)::int AS n FROM "${schema}".kv`);
      equal(row!.n, 3, "the deleted sessions' rows are gone");
      equal((await viewing.get(["touched"])).value, "viewing");
      await lease.release();
      // Released and idle: the next cleanup deletes it.
      await ageSessions(sql, schema, OLD, "bot", "leased");
      equal((await store.cleanup({ olderThanDays: 7 })).deleted, 1);
      deepEqual(await listed(store), ["bot/active", "bot/viewing"]);
    });
  },
);

pgTest(
  "cleanup() re-checks idleness and leases when it deletes: a write or a lease in between keeps the session",
  async () => {
    await withSchema(async (schema, sql) => {
      await using store = pgStore(schema);
      await touch(store, "bot", "written", "leased", "idle");
      await store.close();
      await ageSessions(sql, schema, OLD);
      const backend = new PostgresBackend({ url: PG_URL!, schema, max: 2 });
      await using other = pgStore(schema);
      let lease: { release(): Promise<void> } | undefined;
      const tally = { scanned: 0, deleted: 0, skippedInUse: 0, bytesFreed: 0, errors: [] };
      // Each candidate looks idle and open here, so the backend awaits its
      // close() before the page's delete: write to or lease the session then.
      const local = (ref: { sessionId: string }): LocalSession => ({
        inUse: false,
        lastUsed: 0,
        open: true,
        close: async () => {
          if (ref.sessionId === "written") await touch(other, "bot", "written");
          if (ref.sessionId === "leased") lease = await other.acquire("bot", "leased");
        },
      });
      const run: CleanupRun = {
        cutoffMs: Date.now() - 7 * DAY_MS,
        dryRun: false,
        tally,
        check() {},
        progress() {},
        local,
        sweepExpired: () => Promise.resolve(),
      };
      try {
        await backend.cleanup(run);
      } finally {
        await backend.close();
      }
      deepEqual({ ...tally, bytesFreed: 0 }, {
        scanned: 3,
        deleted: 1,
        skippedInUse: 0,
        bytesFreed: 0,
        errors: [],
      });
      deepEqual(await listed(other), ["bot/leased", "bot/written"]);
      await lease?.release();
    });
  },
);

pgTest("acquire() grants turns first come, first served within a process", async () => {
  await withSchema(async (schema) => {
    await using store = pgStore(schema);
    const first = await store.acquire("bot", "s");
    const order: number[] = [];
    const waiters = Array.from(
      { length: 5 },
      (_, i) =>
        store.acquire("bot", "s").then(async (lease) => {
          order.push(i);
          await sleep(5);
          await lease.release();
        }),
    );
    await sleep(50);
    deepEqual(order, []);
    await first.release();
    await Promise.all(waiters);
    deepEqual(order, [0, 1, 2, 3, 4]);
  });
});

pgTest(
  "a lease is exclusive across hosts, renewed while held past its TTL, and freed by release() and store.close()",
  async () => {
    await withSchema(async (schema) => {
      const a = pgStore(schema, { leaseTtlMs: 600 });
      await using b = pgStore(schema, { leaseTtlMs: 600 });
      const lease = await a.acquire("bot", "s");
      await rejects(b.acquire("bot", "s", { timeoutMs: 200 }), LeaseTimeoutError);
      await sleep(1000); // past the TTL: renewed meanwhile
      await rejects(b.acquire("bot", "s", { timeoutMs: 200 }), LeaseTimeoutError);
      const controller = new AbortController();
      const waiting = b.acquire("bot", "s", { signal: controller.signal });
      controller.abort(new Error("stop"));
      await rejects(waiting, /stop/);
      await lease.release();
      const second = await b.acquire("bot", "s", { timeoutMs: 500 });
      await second.release();
      // A lease still held when its store closes is released with it.
      await a.acquire("bot", "t");
      await a.close();
      const third = await b.acquire("bot", "t", { timeoutMs: 300 });
      await third.release();
    });
  },
);

pgTest("a killed lease holder frees the session after leaseTtlMs, not before", async () => {
  await withSchema(async (schema) => {
    const ttl = 1500;
    const child = Child.fixture("./postgres_lease_holder.ts", [PG_URL!, schema, String(ttl)]);
    try {
      await child.waitFor("leased");
    } catch (error) {
      await child.kill();
      throw error;
    }
    await child.kill();
    const killed = Date.now();
    await using store = pgStore(schema);
    await rejects(store.acquire("bot", "leased", { timeoutMs: 300 }), LeaseTimeoutError);
    const lease = await store.acquire("bot", "leased", { timeoutMs: 10_000 });
    const waited = Date.now() - killed;
    ok(waited >= ttl - ttl / 3 - 100 && waited < ttl + 2000, `freed after ${waited} ms`);
    equal((await lease.kv.get(["holder"])).value, child.process.pid);
    await lease.release();
  });
});

pgTest("watch() and listenQueue() see commits and messages of another host", async () => {
  await withSchema(async (schema) => {
    await using here = pgStore(schema);
    await using there = pgStore(schema);
    using kv = await here.openKv("bot", "s");
    using remote = await there.openKv("bot", "s");
    const reader = kv.watch([["k"]]).getReader();
    equal((await reader.read()).value?.[0].value, null);
    await remote.set(["k"], "from there");
    equal((await reader.read()).value?.[0].value, "from there");
    await reader.cancel();
    const got: unknown[] = [];
    const listening = kv.listenQueue((v) => {
      got.push(v);
    });
    await remote.enqueue("one");
    await remote.enqueue("two", { delay: 100 });
    for (let i = 0; i < 100 && got.length < 2; i++) await sleep(20);
    deepEqual(got, ["one", "two"]);
    kv.close();
    await listening;
  });
});

pgTest("expired rows are swept from the table by a later commit and by cleanup()", async () => {
  await withSchema(async (schema, sql) => {
    await using store = pgStore(schema);
    using kv = await store.openKv("bot", "s");
    const count = async () =>
      (await sql.unsafe(`SELECT count(*)::int AS n FROM "${schema}".kv`))[0]!.n as number;
    await kv.set(["short"], 1, { expireIn: 30 });
    await kv.set(["kept"], 1);
    equal(await count(), 2);
    await sleep(60);
    equal((await kv.get(["short"])).value, null, "invisible once expired");
    equal(await count(), 2, "still stored");
    await kv.set(["other"], 1);
    equal(await count(), 2, "the next commit swept it");
    await kv.set(["short2"], 1, { expireIn: 30 });
    await sleep(60);
    equal((await store.cleanup({ olderThanDays: 7 })).deleted, 0);
    equal(await count(), 2, "cleanup swept the open session");
  });
});

pgTest(
  "commits serialise per session only: a locked session waits up to lockTimeoutMs, others go on",
  async () => {
    await withSchema(async (schema, sql) => {
      await using store = pgStore(schema, { lockTimeoutMs: 300 });
      await touch(store, "bot", "locked", "free");
      using locked = await store.openKv("bot", "locked");
      using free = await store.openKv("bot", "free");
      const reserved = await sql.reserve();
      try {
        await reserved.unsafe("BEGIN");
        await reserved.unsafe(
          `SELECT 1 FROM "${schema}".sessions WHERE bot_id = $1 AND session_id = $2 FOR UPDATE`,
          [new TextEncoder().encode("bot"), new TextEncoder().encode("locked")],
        );
        const start = Date.now();
        ok((await free.set(["k"], 1)).ok);
        ok(Date.now() - start < 250, "another session's commit did not wait");
        const error = await locked.set(["k"], 1).then(() => undefined, (e) => e);
        ok(error instanceof SessionBusyError, String(error));
        equal((error.cause as { code?: string }).code, "55P03");
        equal((await locked.get(["k"])).value, null, "reads do not wait for the lock");
      } finally {
        await reserved.unsafe("ROLLBACK");
        reserved.release();
      }
      ok((await locked.set(["k"], 1)).ok);
    });
  },
);

Deno.test("[postgres] an unreachable server gives PostgresUnavailableError with the driver's error as cause", async () => {
  await using store = new SessionStore({
    backend: postgresBackend({
      url: "postgres://nobody:secret@127.0.0.1:1/none",
      connectTimeoutMs: 2000,
    }),
  });
  const error = await store.openKv("bot", "s").then(() => undefined, (e) => e);
  ok(error instanceof PostgresUnavailableError, String(error));
  equal(error.code, "ECONNREFUSED");
  ok(error.cause instanceof Error);
  ok(!error.message.includes("secret"), error.message);
  ok(!store.root.includes("secret"), store.root);
});

Deno.test("[postgres] postgresBackend() validates its options", () => {
  throws(() => postgresBackend({ url: "" }), TypeError);
  throws(() => postgresBackend({} as { url: string }), TypeError);
  throws(() => postgresBackend({ url: "postgres://x/y", schema: "Bad-Name" }), TypeError);
  throws(() => postgresBackend({ url: "postgres://x/y", schema: "a;drop" }), TypeError);
  throws(() => postgresBackend({ url: "postgres://x/y", max: 0 }), RangeError);
  throws(() => postgresBackend({ url: "postgres://x/y", max: 1.5 }), RangeError);
  throws(() => postgresBackend({ url: "postgres://x/y", leaseTtlMs: -1 }), RangeError);
});
