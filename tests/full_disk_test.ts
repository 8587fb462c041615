/**
 * Full disk: the store runs on a 2 MiB tmpfs the test mounts (Linux, root;
 * skipped with the reason printed where mounting is not allowed). Writes fill
 * it until SQLite reports SQLITE_FULL (13); then the error must be a
 * `SqliteError` with that code (directly or as a cause), the failed commit
 * must have written nothing, every acknowledged write must stay readable,
 * the store must stay usable, and once a filler file is deleted writing
 * (also to a new session) works again. `integrity_check` is `ok` afterwards.
 */
import { equal, fail, ok } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { type KvU64, SessionCorruptedError, SessionStore, SqliteError } from "../mod.ts";
import { testDrivers } from "./_drivers.ts";
import { withTempDir } from "./_helpers.ts";

const SQLITE_FULL = 13;

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b).trim();
    return { ok: out.success, text: decode(out.stderr) || decode(out.stdout) };
  } catch (error) {
    return { ok: false, text: (error as Error).message };
  }
}

async function mountTmpfs(
  dir: string,
  size: string,
  extra = "",
): Promise<{ ok: boolean; text: string }> {
  return await run("mount", ["-t", "tmpfs", "-o", `size=${size}${extra}`, "tmpfs", dir]);
}

async function unmount(dir: string): Promise<void> {
  const result = await run("umount", [dir]);
  if (!result.ok) {
    // Something still holds a file: detach it so the temp dir can go.
    const lazy = await run("umount", ["-l", dir]);
    if (!lazy.ok) throw new Error(`Could not unmount ${dir}: ${result.text}; ${lazy.text}`);
  }
}

/** Why tmpfs cannot be mounted here, or undefined when it can. */
async function cannotMount(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return `not Linux (${Deno.build.os})`;
  const dir = await Deno.makeTempDir({ prefix: "sessionkv-mount-probe-" });
  try {
    const result = await mountTmpfs(dir, "64k");
    if (!result.ok) return `mount -t tmpfs failed: ${result.text}`;
    await unmount(dir);
    return undefined;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const skipReason = await cannotMount();
if (skipReason !== undefined) console.log(`full_disk_test skipped: ${skipReason}`);

/** The SqliteError with SQLITE_FULL in `error` or its causes, if any. */
function fullError(error: unknown): SqliteError | undefined {
  for (let e = error; e instanceof Error; e = e.cause) {
    if (e instanceof SqliteError && e.primaryCode === SQLITE_FULL) return e;
  }
  return undefined;
}

function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e = error; e instanceof Error; e = e.cause) {
    parts.push(`${e.name}(${(e as { code?: unknown }).code ?? ""}): ${e.message}`);
  }
  return parts.join(" <- ") || String(error);
}

const big = (i: number, part: string) => `${part}${i}`.padEnd(10_000, "x");

for (const driver of testDrivers) {
  for (const wal of [true, false]) {
    Deno.test({
      name:
        `[${driver}] wal: ${wal}: on a full disk a commit fails with SQLITE_FULL and writes nothing, ` +
        "acknowledged data stays readable, and writing resumes once space is freed",
      ignore: skipReason !== undefined,
      fn: async () => {
        await withTempDir(async (tmp) => {
          const mnt = join(tmp, "mnt");
          await Deno.mkdir(mnt);
          const mounted = await mountTmpfs(mnt, "2m");
          ok(mounted.ok, `mount: ${mounted.text}`);
          const root = join(mnt, "root");
          let store: SessionStore | undefined;
          try {
            store = new SessionStore({ root, driver, wal });
            using kv = await store.openKv("bot", "a");
            for (let i = 0; i < 5; i++) await kv.set(["early", i], `early ${i}`);
            await Deno.writeFile(join(mnt, "filler"), new Uint8Array(1024 * 1024));

            // Fill the disk with atomics of three 10 KB values and a sum.
            let acked = 0;
            let failure: unknown;
            for (let i = 0; i < 1000; i++) {
              try {
                const result = await kv.atomic()
                  .set(["big", i, "a"], big(i, "a"))
                  .set(["big", i, "b"], big(i, "b"))
                  .set(["big", i, "c"], big(i, "c"))
                  .sum(["count"], 1n)
                  .commit();
                equal(result.ok, true);
                acked++;
              } catch (error) {
                failure = error;
                break;
              }
            }
            if (failure === undefined) fail("1000 commits of 30 KB fitted in a 2 MiB file system");
            const full = fullError(failure);
            ok(full, `expected SQLITE_FULL, got ${describe(failure)}`);
            ok(/full/.test(full.message), full.message);
            console.log(
              `[${driver}] wal ${wal}: ${acked} commits fitted; the next failed with ${
                describe(failure)
              }`,
            );

            // Nothing of the failed commit, everything acknowledged.
            for (const part of ["a", "b", "c"]) {
              equal((await kv.get(["big", acked, part])).versionstamp, null, "no partial commit");
            }
            equal((await kv.get<KvU64>(["count"])).value?.value ?? 0n, BigInt(acked));
            for (let i = 0; i < 5; i++) equal((await kv.get(["early", i])).value, `early ${i}`);
            for (let i = 0; i < acked; i++) {
              equal((await kv.get(["big", i, "c"])).value, big(i, "c"));
            }
            let listed = 0;
            for await (const _ of kv.list({ prefix: ["big"] })) listed++;
            equal(listed, acked * 3);

            // Opening a new session on the full disk fails just as clearly (or works).
            try {
              using other = await store.openKv("bot", "b");
              await other.set(["x"], 1);
            } catch (error) {
              ok(fullError(error), `new session on a full disk: ${describe(error)}`);
            }

            // Free space: writes work again, in the same view and in new sessions.
            await Deno.remove(join(mnt, "filler"));
            const after = await kv.atomic()
              .set(["big", acked, "a"], big(acked, "a"))
              .set(["big", acked, "b"], big(acked, "b"))
              .set(["big", acked, "c"], big(acked, "c"))
              .sum(["count"], 1n)
              .commit();
            equal(after.ok, true);
            equal((await kv.get<KvU64>(["count"])).value?.value, BigInt(acked + 1));
            {
              using other = await store.openKv("bot", "b");
              await other.set(["x"], 2);
              equal((await other.get(["x"])).value, 2);
            }
            kv.close();
            await store.close();
            store = undefined;
            for (const session of ["a", "b"]) {
              const db = new DatabaseSync(join(root, "bot", session, "kv.sqlite3"), {
                readOnly: true,
              });
              try {
                equal(db.prepare("PRAGMA integrity_check").get()?.integrity_check, "ok");
              } finally {
                db.close();
              }
            }
          } finally {
            await store?.close();
            await unmount(mnt);
          }
        });
      },
    });
  }
}

for (const driver of testDrivers) {
  Deno.test({
    name: `[${driver}] with no free inode, reopening a healthy session fails with a SqliteError, ` +
      "not SessionCorruptedError, and works once inodes are freed",
    ignore: skipReason !== undefined,
    fn: async () => {
      await withTempDir(async (tmp) => {
        const mnt = join(tmp, "mnt");
        await Deno.mkdir(mnt);
        const mounted = await mountTmpfs(mnt, "4m", ",nr_inodes=64");
        ok(mounted.ok, `mount: ${mounted.text}`);
        const root = join(mnt, "root");
        try {
          {
            // Closing checkpoints and deletes -wal and -shm: reopening must create them.
            await using store = new SessionStore({ root, driver });
            using kv = await store.openKv("bot", "healthy");
            await kv.set(["k"], "kept");
          }
          const fillers: string[] = [];
          for (let i = 0; i < 1000; i++) {
            const path = join(mnt, `inode-${i}`);
            try {
              await Deno.writeFile(path, new Uint8Array());
            } catch {
              break; // No inode left.
            }
            fillers.push(path);
          }
          await using store = new SessionStore({ root, driver });
          let failure: unknown;
          try {
            using kv = await store.openKv("bot", "healthy");
            equal((await kv.get(["k"])).value, "kept");
          } catch (error) {
            failure = error;
          }
          if (failure !== undefined) {
            console.log(`[${driver}] no inode left: ${describe(failure)}`);
            ok(
              !(failure instanceof SessionCorruptedError),
              `a healthy session was reported damaged: ${describe(failure)}`,
            );
            ok(failure instanceof SqliteError, describe(failure));
          }
          for (const path of fillers.slice(0, 8)) await Deno.remove(path);
          using kv = await store.openKv("bot", "healthy");
          equal((await kv.get(["k"])).value, "kept");
        } finally {
          await unmount(mnt);
        }
      });
    },
  });
}
