/**
 * `denoKvBackend`: the store-level behaviour on a `Deno.Kv` file that the
 * same-source KV suites do not cover: the session index (`sessions()`),
 * `deleteSession`, leases across stores and processes, cleanup (also of
 * 10,000 sessions racing concurrent writers), expiry sweeps, redo logs of
 * commits too large for one Deno KV atomic operation, and long keys.
 */
import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import { LeaseTimeoutError, SessionBusyError, SessionStore } from "../mod.ts";
import { denoKvBackend, type DenoKvBackendOptions } from "../denokv.ts";
import { mulberry32 } from "./_helpers.ts";
import { collect } from "./_kv_helpers.ts";

const PREFIX = ["sessionkv"];

/** A Deno KV file in a fresh temp directory (on tmpfs when there is one: Deno KV syncs every commit). */
async function tempKv(fast = false): Promise<
  { path: string; kv: Deno.Kv } & AsyncDisposable
> {
  let base: string | undefined;
  if (fast) {
    try {
      if (Deno.statSync("/dev/shm").isDirectory) base = "/dev/shm";
    } catch { /* no tmpfs */ }
  }
  const dir = await Deno.makeTempDir({
    prefix: "sessionkv-denokv-",
    ...(base ? { dir: base } : {}),
  });
  const path = `${dir}/kv.sqlite3`;
  const kv = await Deno.openKv(path);
  return {
    path,
    kv,
    async [Symbol.asyncDispose]() {
      try {
        kv.close();
      } catch { /* closed by the test */ }
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function storeOn(
  kv: Deno.Kv,
  options: DenoKvBackendOptions = {},
  store: { busyTimeoutMs?: number; idleCloseMs?: number; maxValueBytes?: number } = {},
): SessionStore {
  return new SessionStore({ ...store, backend: denoKvBackend(kv, options) });
}

/** Every raw entry of the KV under a prefix. */
async function raw(kv: Deno.Kv, prefix: Deno.KvKey): Promise<Deno.KvEntry<unknown>[]> {
  const out: Deno.KvEntry<unknown>[] = [];
  for await (const e of kv.list({ prefix }, { batchSize: 1000 })) out.push(e);
  return out;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Checks the index against the keys: every uid with keys belongs to a
 * session in the index, every session in the index has keys (in these tests
 * every session has some), one idle entry per session with its bucket, no
 * garbage left.
 *
 * @returns The number of sessions in the index.
 */
async function assertIndexConsistent(kv: Deno.Kv, prefix: Deno.KvKey = PREFIX): Promise<number> {
  const n = prefix.length;
  const metas = await raw(kv, [...prefix, "idx"]);
  const uids = new Map<number, string>();
  const buckets = new Set<string>();
  for (const e of metas) {
    const meta = e.value as { uid: number; bucket: number; log?: unknown };
    equal(meta.log, undefined, "no commit left half applied");
    ok(!uids.has(meta.uid), `uid ${meta.uid} used twice`);
    uids.set(meta.uid, JSON.stringify(e.key.slice(n + 1)));
    buckets.add(JSON.stringify([meta.bucket, ...e.key.slice(n + 1)]));
  }
  const withKeys = new Set<number>();
  for (const e of await raw(kv, [...prefix, "u"])) {
    const uid = e.key[n + 1] as number;
    ok(uids.has(uid), `keys of uid ${uid} (${Deno.inspect(e.key)}) belong to no session`);
    withKeys.add(uid);
  }
  for (const [uid, ids] of uids) ok(withKeys.has(uid), `session ${ids} has no keys`);
  const idle = await raw(kv, [...prefix, "idle"]);
  deepStrictEqual(
    new Set(idle.map((e) => JSON.stringify(e.key.slice(n + 1)))),
    buckets,
    "one idle index entry per session",
  );
  deepStrictEqual(await raw(kv, [...prefix, "gc"]), [], "no garbage left");
  return metas.length;
}

Deno.test("denoKvBackend() sessions() lists the index with size, last activity and use", async () => {
  await using file = await tempKv();
  const store = storeOn(file.kv, {}, { idleCloseMs: 10 });
  const before = Date.now();
  await store.withSession("bot-a", "s1", (kv) => kv.set(["k"], "x".repeat(100)));
  await store.withSession("bot-a", "s2", (kv) => kv.set(["k"], 1));
  await store.withSession("bot-b", "s1", (kv) => kv.set(["k"], 1));
  using held = await store.openKv("bot-b", "s1");
  const infos = [];
  for await (const s of store.sessions()) infos.push(s);
  deepStrictEqual(infos.map((s) => [s.botId, s.sessionId]), [
    ["bot-a", "s1"],
    ["bot-a", "s2"],
    ["bot-b", "s1"],
  ]);
  for (const s of infos) {
    ok(s.lastActivity.getTime() >= before && s.lastActivity.getTime() <= Date.now());
    ok(s.sizeBytes > 0);
    ok(s.path.startsWith("denokv:sessionkv/"));
  }
  ok(infos[0]!.sizeBytes > infos[1]!.sizeBytes, "size follows the stored bytes");
  equal(infos[2]!.open, true, "open here");
  const botA = [];
  for await (const s of store.sessions({ botId: "bot-a" })) botA.push(s.sessionId);
  deepStrictEqual(botA, ["s1", "s2"]);

  // Another instance sees what this one has open (idle sessions are closed
  // after idleCloseMs, and then no longer open).
  await sleep(100);
  const other = storeOn(file.kv);
  const seen = new Map<string, boolean>();
  for await (const s of other.sessions()) seen.set(`${s.botId}/${s.sessionId}`, s.open);
  deepStrictEqual(Object.fromEntries(seen), {
    "bot-a/s1": false,
    "bot-a/s2": false,
    "bot-b/s1": true,
  });
  held.close();
  await other.close();
  await store.close();
});

Deno.test("denoKvBackend() deleteSession removes the session's keys and index entries", async () => {
  await using file = await tempKv();
  const store = storeOn(file.kv, {}, { maxValueBytes: 300_000, idleCloseMs: 10 });
  await store.withSession("bot", "gone", async (kv) => {
    await kv.set(["big"], new Uint8Array(200_000)); // chunked
    await kv.set(["soon"], 1, { expireIn: 60_000 });
    await kv.enqueue("message", { delay: 60_000 });
  });
  await store.withSession("bot", "kept", (kv) => kv.set(["k"], 1));
  equal(await store.deleteSession("bot", "gone"), true);
  equal(await store.deleteSession("bot", "gone"), false, "absent now");
  equal(await store.deleteSession("bot", "never"), false);
  equal(await assertIndexConsistent(file.kv), 1);
  deepStrictEqual(await raw(file.kv, [...PREFIX, "exp"]), []);
  await store.withSession("bot", "gone", async (kv) => {
    equal((await kv.get(["big"])).versionstamp, null, "a new, empty session");
  });

  // Open in another instance: busy until it lets go.
  await sleep(100);
  const other = storeOn(file.kv);
  const view = await other.openKv("bot", "kept");
  const quick = storeOn(file.kv, {}, { busyTimeoutMs: 50 });
  await rejects(quick.deleteSession("bot", "kept"), SessionBusyError);
  view.close();
  await other.close();
  equal(await quick.deleteSession("bot", "kept"), true);
  await quick.close();
  await store.close();
});

Deno.test("denoKvBackend() leases are exclusive across stores on one Deno KV file", async () => {
  await using file = await tempKv();
  const kv2 = await Deno.openKv(file.path); // another handle: another "instance"
  const a = storeOn(file.kv, { leaseTtlMs: 300 });
  const b = storeOn(kv2, { leaseTtlMs: 300 });
  const lease = await a.acquire("bot", "s", { timeoutMs: 1000 });
  await lease.kv.set(["holder"], "a");
  // Held past several TTLs: renewals keep it.
  await rejects(b.acquire("bot", "s", { timeoutMs: 1000 }), LeaseTimeoutError);
  const abort = new AbortController();
  const waiting = b.acquire("bot", "s", { signal: abort.signal, timeoutMs: 5000 });
  abort.abort(new Error("stop waiting"));
  await rejects(waiting, /stop waiting/);
  const next = b.acquire("bot", "s", { timeoutMs: 5000 });
  await sleep(50);
  await lease.release();
  const started = Date.now();
  await using second = await next;
  ok(Date.now() - started < 1000, "handed over on release, not after the TTL");
  equal((await second.kv.get(["holder"])).value, "a");
  await second.release();
  await a.close();
  await b.close();
  kv2.close();
});

/** Runs a Deno process that takes the lease of ("bot", "leased") and holds it. */
function spawnHolder(path: string, ttl: number) {
  const code = `
    import { SessionStore } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
    import { denoKvBackend } from ${JSON.stringify(new URL("../denokv.ts", import.meta.url).href)};
    const kv = await Deno.openKv(${JSON.stringify(path)});
    const store = new SessionStore({ backend: denoKvBackend(kv, { leaseTtlMs: ${ttl} }) });
    const lease = await store.acquire("bot", "leased", { timeoutMs: 10000 });
    await lease.kv.set(["holder"], Deno.pid);
    console.log("leased");
    for await (const _ of Deno.stdin.readable);
    await lease.release();
    await store.close();
    kv.close();
    console.log("released");
  `;
  const process = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-kv", code],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    process,
    async waitFor(text: string): Promise<void> {
      while (!buffer.includes(text)) {
        const { value, done } = await lines.read();
        if (done) throw new Error(`holder exited before "${text}"`);
        buffer += value;
      }
    },
    async [Symbol.asyncDispose]() {
      try {
        process.kill("SIGKILL");
      } catch { /* exited */ }
      await process.status;
      await lines.cancel().catch(() => undefined);
      await process.stdin.close().catch(() => undefined);
    },
  };
}

Deno.test("denoKvBackend() a lease is exclusive across processes and lapses when its holder is killed", async () => {
  await using file = await tempKv();
  const ttl = 1000;
  const store = storeOn(file.kv, { leaseTtlMs: ttl });
  {
    // Released by the holder: handed over at once.
    await using holder = spawnHolder(file.path, ttl);
    await holder.waitFor("leased");
    await rejects(store.acquire("bot", "leased", { timeoutMs: 2 * ttl }), LeaseTimeoutError);
    const next = store.acquire("bot", "leased", { timeoutMs: 10_000 });
    await holder.process.stdin.close();
    await holder.waitFor("released");
    await (await next).release();
  }
  {
    // Killed: the lease lapses after the TTL.
    await using holder = spawnHolder(file.path, ttl);
    await holder.waitFor("leased");
    holder.process.kill("SIGKILL");
    await holder.process.status;
    const started = Date.now();
    await using lease = await store.acquire("bot", "leased", { timeoutMs: 10_000 });
    const waited = Date.now() - started;
    ok(waited <= ttl + 500, `took the lapsed lease after ${waited} ms`);
    ok(typeof (await lease.kv.get(["holder"])).value === "number");
  }
  await store.close();
});

Deno.test("denoKvBackend() cleanup deletes idle sessions, keeps used ones and sweeps expired keys", async () => {
  await using file = await tempKv();
  const store = storeOn(file.kv);
  for (let i = 0; i < 5; i++) {
    await store.withSession("bot", `idle-${i}`, (kv) => kv.set(["k"], i));
  }
  await store.withSession("bot", "queued", (kv) => kv.enqueue("pending"));
  using open = await store.openKv("bot", "open-here");
  await open.set(["k"], 1);
  const other = storeOn(file.kv);
  using elsewhere = await other.openKv("bot", "open-elsewhere");
  await elsewhere.set(["k"], 1);
  await sleep(5);
  const progress: number[] = [];
  const dry = await store.cleanup({ olderThanMs: 0, dryRun: true });
  equal(dry.deleted, 5);
  equal(dry.skippedInUse, 2);
  equal(await assertIndexConsistent(file.kv), 8, "a dry run deletes nothing");
  const report = await store.cleanup({
    olderThanMs: 0,
    onProgress: (p) => progress.push(p.scanned),
  });
  equal(report.deleted, 5);
  equal(report.skippedInUse, 2);
  ok(report.bytesFreed > 0);
  ok(progress.length > 0 && progress.at(-1) === report.scanned);
  deepStrictEqual(report.errors, []);
  equal(await assertIndexConsistent(file.kv), 3);
  const left = [];
  for await (const s of store.sessions()) left.push(s.sessionId);
  deepStrictEqual(left, ["open-elsewhere", "open-here", "queued"]);

  // Expired keys are hidden at once and swept from storage by cleanup.
  await open.set(["short"], "x".repeat(1000), { expireIn: 30 });
  await open.set(["long"], 1, { expireIn: 60_000 });
  await sleep(60);
  equal((await open.get(["short"])).versionstamp, null);
  const stored = async () => (await raw(file.kv, [...PREFIX, "u"])).length;
  const before = await stored();
  await store.cleanup({ olderThanDays: 1 });
  equal(await stored(), before - 1, "the expired record was removed");
  equal((await open.get(["long"])).value, 1);
  equal((await raw(file.kv, [...PREFIX, "exp"])).length, 1, "the next expiry is indexed");
  open.close();
  elsewhere.close();
  await other.close();
  await store.close();
});

Deno.test("denoKvBackend() large values are chunked, replaced whole and read back", async () => {
  await using file = await tempKv();
  const store = storeOn(file.kv, {}, { maxValueBytes: 1 << 20 });
  using kv = await store.openKv("bot", "s");
  const chunks = async () => (await raw(file.kv, [...PREFIX, "u"])).filter((e) => e.key[3] === "c");
  const big = new Uint8Array(1 << 20).map((_, i) => i % 251);
  const first = await kv.set(["big"], big);
  deepStrictEqual((await kv.get(["big"])).value, big);
  equal((await chunks()).length, 16);
  const text = "é".repeat(200_000); // a V8 payload over 64 KiB
  await kv.atomic().set(["big"], text).set(["small"], 1).commit();
  equal((await kv.get(["big"])).value, text);
  equal((await chunks()).length, 4, "the old chunks went with the old value");
  const listed = await collect(kv.list({ prefix: [] }));
  deepStrictEqual(listed.map((e) => e.key), [["big"], ["small"]]);
  ok(listed[0]!.versionstamp > first.versionstamp);
  await kv.delete(["big"]);
  equal((await chunks()).length, 0);
  kv.close();
  await store.close();
});

Deno.test("denoKvBackend() a record it did not write marks the session damaged", async () => {
  await using file = await tempKv();
  const store = storeOn(file.kv);
  using kv = await store.openKv("bot", "s");
  await kv.set(["k"], 1);
  const [entry] = await raw(file.kv, [...PREFIX, "u"]);
  await file.kv.set(entry!.key, "not a record");
  await rejects(kv.get(["k"]), { name: "SessionCorruptedError" });
  kv.close();
  await store.close();
});

Deno.test("denoKvBackend() watch() sees commits of another instance", async () => {
  await using file = await tempKv();
  const a = storeOn(file.kv);
  const b = storeOn(file.kv);
  using kvA = await a.openKv("bot", "s");
  using kvB = await b.openKv("bot", "s");
  const reader = kvA.watch([["k"]]).getReader();
  equal((await reader.read()).value?.[0]?.versionstamp, null);
  await kvB.set(["k"], "from b");
  equal((await reader.read()).value?.[0]?.value, "from b");
  await reader.cancel();
  kvA.close();
  kvB.close();
  await a.close();
  await b.close();
});

/**
 * A `Deno.Kv` that stops writing (as if its process died) right after it
 * committed the decision of a commit with a redo log.
 */
function dyingAfterDecision(kv: Deno.Kv): { kv: Deno.Kv; died: () => boolean } {
  let dead = false;
  const atomic = () => {
    const op = kv.atomic();
    let decides = false;
    const self: Deno.AtomicOperation = new Proxy(op, {
      get(o, p) {
        const v = Reflect.get(o, p);
        if (typeof v !== "function") return v;
        if (p === "commit") {
          return async () => {
            if (dead) throw new Error("simulated crash");
            const r = await o.commit();
            if (decides && r.ok) dead = true;
            return r;
          };
        }
        return (...args: unknown[]) => {
          if (p === "set" && (args[1] as { log?: unknown })?.log !== undefined) decides = true;
          v.apply(o, args);
          return self;
        };
      },
    });
    return self;
  };
  const wrapped = new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") return atomic;
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { kv: wrapped, died: () => dead };
}

Deno.test("denoKvBackend() a commit too large for one atomic is all or nothing, even if its writer dies", async () => {
  await using file = await tempKv();
  const dying = dyingAfterDecision(file.kv);
  const writer = storeOn(dying.kv);
  const reader = storeOn(file.kv);
  using w = await writer.openKv("bot", "s");
  await w.set(["before"], 1);
  const op = w.atomic();
  for (let i = 0; i < 1000; i++) op.set(["m", i], i); // more than one Deno KV atomic allows
  await rejects(op.commit(), /simulated crash/);
  ok(dying.died(), "the writer died after deciding");
  // The next reader applies the decided commit before reading.
  using r = await reader.openKv("bot", "s");
  const listed = await collect(r.list({ prefix: ["m"] }));
  equal(listed.length, 1000);
  equal(new Set(listed.map((e) => e.versionstamp)).size, 1, "one commit, one versionstamp");
  equal((await r.get(["before"])).value, 1);
  equal(await assertIndexConsistent(file.kv), 1);
  w.close();
  r.close();
  await writer.close().catch(() => undefined);
  await reader.close();
});

Deno.test("denoKvBackend() keys up to Deno KV's limit list in Deno KV's order despite the prefix", async () => {
  await using file = await tempKv();
  const oracle = await Deno.openKv(":memory:");
  const prefix = ["a", "rather", "long", "prefix".repeat(20)];
  const store = storeOn(file.kv, { prefix });
  using kv = await store.openKv("bot", "s");
  const random = mulberry32(7);
  const keys: Deno.KvKey[] = [];
  const long = "y".repeat(1900);
  for (let i = 0; i < 60; i++) {
    const tail = Math.floor(random() * 140);
    const zeros = new Uint8Array(Math.floor(random() * 8));
    switch (i % 4) {
      case 0:
        keys.push([long + "a".repeat(tail) + String(i).padStart(3, "0")]);
        break;
      case 1:
        keys.push([long, zeros, i]);
        break;
      case 2:
        keys.push([long.slice(0, 1000), new Uint8Array(400 + tail / 3), i]); // escaped zeros
        break;
      default:
        keys.push(["z".repeat(1990 + (i % 50))]);
    }
  }
  for (const [i, key] of keys.entries()) {
    await kv.set(key, i);
    await oracle.set(key, i);
  }
  const selectors: Deno.KvListSelector[] = [
    { prefix: [] },
    { prefix: [long] },
    { start: [long + "a"], end: [long + "a".repeat(100)] },
    { start: keys[5]!, end: keys[40]! },
  ];
  for (const selector of selectors) {
    for (const options of [{}, { reverse: true }, { limit: 7 }, { batchSize: 3, reverse: true }]) {
      const want = (await collect(oracle.list(selector, options))).map((e) => [e.key, e.value]);
      const got = (await collect(kv.list(selector, options))).map((e) => [e.key, e.value]);
      deepStrictEqual(
        got,
        want,
        `${Deno.inspect(selector).slice(0, 80)} ${JSON.stringify(options)}`,
      );
    }
  }
  for (const [i, key] of keys.entries()) equal((await kv.get(key)).value, i);
  const data = await raw(file.kv, [...prefix, "u"]);
  ok(data.filter((e) => e.key.length === prefix.length + 5).length > 20, "keys stored cut");
  equal(await assertIndexConsistent(file.kv, prefix), 1);
  kv.close();
  oracle.close();
  await store.close();
});

Deno.test({
  name:
    "denoKvBackend() cleanup of 10,000 idle sessions racing concurrent writers loses no write and keeps the index consistent",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using file = await tempKv(true);
    const SESSIONS = 10_000;
    const t0 = performance.now();
    const seeder = storeOn(file.kv);
    const ids = Array.from({ length: SESSIONS }, (_, i) => `s${i}`);
    for (let i = 0; i < SESSIONS; i += 200) {
      await Promise.all(
        ids.slice(i, i + 200).map(async (id) => {
          using kv = await seeder.openKv("bot", id);
          await kv.set(["seed"], id);
        }),
      );
    }
    await seeder.close();
    equal(await assertIndexConsistent(file.kv), SESSIONS);
    await sleep(5);
    const t1 = performance.now();

    // The cleaner and the writers are separate instances with their own handles.
    const writerKv = await Deno.openKv(file.path);
    const writers = storeOn(writerKv, {}, { idleCloseMs: 5 });
    const cleaner = storeOn(file.kv);
    const acknowledged: { id: string; key: Deno.KvKey; value: number }[] = [];
    const written = new Set<string>();
    let stop = false;
    const random = mulberry32(42);
    const cleaning = cleaner.cleanup({ olderThanMs: 0 });
    await sleep(2); // Every write below is after the cutoff.
    const loops = Array.from({ length: 8 }, async (_, w) => {
      for (let n = 0; !stop; n++) {
        const id = ids[Math.floor(random() * SESSIONS)]!;
        written.add(id);
        using kv = await writers.openKv("bot", id);
        if (n % 3 === 0) {
          const r = await kv.atomic().set(["w", w, n], n).sum(["count"], 1n).commit();
          ok(r.ok);
        } else {
          await kv.set(["w", w, n], n);
        }
        acknowledged.push({ id, key: ["w", w, n], value: n });
      }
    });
    const report = await cleaning;
    const t2 = performance.now();
    stop = true;
    await Promise.all(loops);
    await writers.close();
    writerKv.close();
    await cleaner.close();

    console.log(
      `seeded ${SESSIONS} in ${(t1 - t0).toFixed(0)} ms; cleanup took ${(t2 - t1).toFixed(0)} ms ` +
        `with ${acknowledged.length} writes racing it; report ${JSON.stringify(report)}`,
    );
    ok(acknowledged.length > 50, `${acknowledged.length} writes raced the cleanup`);
    deepStrictEqual(report.errors, []);
    const check = storeOn(file.kv);
    for (const { id, key, value } of acknowledged) {
      using kv = await check.openKv("bot", id);
      equal((await kv.get(key)).value, value, `write ${Deno.inspect(key)} to ${id} kept`);
    }
    const left = new Set<string>();
    for await (const s of check.sessions()) left.add(s.sessionId);
    for (const id of ids) {
      if (!written.has(id)) ok(!left.has(id), `idle session ${id} was deleted`);
    }
    for (const id of written) ok(left.has(id), `written session ${id} is in the index`);
    // Deleted: every session whose seed is gone (some were written again after).
    let seeded = 0;
    for (const id of left) {
      using kv = await check.openKv("bot", id);
      if ((await kv.get(["seed"])).versionstamp !== null) seeded++;
    }
    equal(report.deleted, SESSIONS - seeded);
    ok(report.deleted >= SESSIONS - written.size, `deleted ${report.deleted}`);
    await check.close();
    equal(await assertIndexConsistent(file.kv), left.size);
    deepStrictEqual(await raw(file.kv, [...PREFIX, "ctl"]), [], "no pin or lease left behind");
  },
});
