/**
 * Private to the benches: many idle session directories, made fast without
 * SQLite. Each is a copy of one real, empty session's `kv.sqlite3` and
 * `open.lock`, 30 days old, `SESSIONS_PER_BOT` to a bot directory.
 *
 * @module
 */
import { join } from "node:path";
import { SessionStore } from "../mod.ts";

const DAY_MS = 86_400_000;
/** Sessions per bot directory. */
export const SESSIONS_PER_BOT = 1000;

/** One real, empty session database and its lock file, as bytes. */
export async function templateSession(): Promise<{ db: Uint8Array; lock: Uint8Array }> {
  const root = await Deno.makeTempDir({ prefix: "sessionkv-template-" });
  try {
    {
      await using store = new SessionStore({ root });
      using kv = await store.openKv("bot", "template");
      await kv.get(["nothing"]);
    }
    const dir = join(root, "bot", "template");
    return {
      db: await Deno.readFile(join(dir, "kv.sqlite3")),
      lock: await Deno.readFile(join(dir, "open.lock")),
    };
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/**
 * Makes `count` idle session directories under `root` (synchronous calls:
 * the fastest here).
 *
 * @returns How long it took, in ms.
 */
export async function makeIdleSessions(root: string, count: number): Promise<number> {
  const { db, lock } = await templateSession();
  const old = new Date(Date.now() - 30 * DAY_MS);
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const dir = join(root, `bot-${Math.floor(i / SESSIONS_PER_BOT)}`, `session-${i}`);
    Deno.mkdirSync(dir, { recursive: true });
    const file = join(dir, "kv.sqlite3");
    Deno.writeFileSync(file, db);
    Deno.writeFileSync(join(dir, "open.lock"), lock);
    Deno.utimeSync(file, old, old);
  }
  return performance.now() - started;
}
