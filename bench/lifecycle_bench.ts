/**
 * Session lifecycle costs: creating a session file, reopening one after it
 * was closed, and resident memory per open idle session.
 *
 * Run: `deno bench -A --unstable-kv bench/lifecycle_bench.ts`
 */
import { join } from "node:path";
import { SessionStore } from "../mod.ts";
import { testDrivers } from "../tests/_drivers.ts";

const dir = await Deno.makeTempDir({ prefix: "sessionkv-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** Resident memory per open idle session, measured over `n` sessions. */
async function memoryPerSession(driver: "node" | "ffi", n: number): Promise<number> {
  const store = new SessionStore({ root: join(dir, `mem-${driver}`), driver, maxOpenSessions: n });
  // Warm up code paths and allocator before the baseline.
  for (let i = 0; i < 20; i++) {
    using kv = await store.openKv("warm", `s${i}`);
    await kv.set(["k"], i);
  }
  const before = Deno.memoryUsage().rss;
  for (let i = 0; i < n; i++) {
    using kv = await store.openKv("bot", `s${i}`);
    await kv.set(["k"], i);
    await kv.get(["k"]);
  }
  const after = Deno.memoryUsage().rss;
  const open = store.stats().openSessions;
  await store.close();
  return (after - before) / (open - 20);
}

for (const driver of testDrivers) {
  const perSession = await memoryPerSession(driver, 1000);
  console.log(
    `resident memory per open idle session (${driver}): ${(perSession / 1024).toFixed(0)} KiB`,
  );
}

for (const driver of testDrivers) {
  const store = new SessionStore({
    root: join(dir, `create-${driver}`),
    driver,
    maxOpenSessions: 64,
  });
  let n = 0;
  Deno.bench({ name: `create a session (${driver})`, group: "create" }, async () => {
    using _kv = await store.openKv("bot", `new-${n++}`);
  });

  // maxOpenSessions: 1 and two sessions: every openKv closes one file and reopens the other.
  const flip = new SessionStore({
    root: join(dir, `reopen-${driver}`),
    driver,
    maxOpenSessions: 1,
  });
  for (const s of ["a", "b"]) {
    using kv = await flip.openKv("bot", s);
    await kv.set(["k"], s);
  }
  let m = 0;
  Deno.bench({ name: `reopen a closed session (${driver})`, group: "reopen" }, async () => {
    using _kv = await flip.openKv("bot", m++ % 2 === 0 ? "a" : "b");
  });
}
