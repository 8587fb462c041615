/**
 * Commit versions of the SQLite engine. A connection hands out versions from
 * a range it reserved in `meta.version` and writes `meta` only when the range
 * runs out or another connection reserved since, so these tests interleave
 * connections, reopen files and write `meta` from outside, and check that
 * versionstamps only grow and that checks never match a stale versionstamp.
 */
import { equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { SessionStore } from "../mod.ts";
import { withTempDir } from "./_helpers.ts";
import { testDrivers } from "./_drivers.ts";

/** Reads `meta.version` of a session file with a connection of its own. */
function storedMark(path: string): number {
  const db = new DatabaseSync(path);
  try {
    return Number((db.prepare("SELECT version FROM meta").get() as { version: number }).version);
  } finally {
    db.close();
  }
}

for (const driver of testDrivers) {
  Deno.test(`[${driver}] versionstamps grow across two stores committing to one session in turns`, async () => {
    await withTempDir(async (root) => {
      await using a = new SessionStore({ root, driver });
      await using b = new SessionStore({ root, driver });
      using kvA = await a.openKv("bot", "s");
      using kvB = await b.openKv("bot", "s");
      let last = "";
      for (let i = 0; i < 40; i++) {
        // Runs of one to three commits on each side.
        const kv = i % 3 === 2 ? kvB : kvA;
        const { versionstamp } = await kv.set(["k"], i);
        ok(versionstamp > last, `commit ${i}: ${versionstamp} after ${last}`);
        last = versionstamp;
        const seen = await (kv === kvA ? kvB : kvA).get(["k"]);
        equal(seen.versionstamp, versionstamp, "the other store reads the latest version");
      }
    });
  });

  Deno.test(`[${driver}] a check with a versionstamp from before another store's commit fails`, async () => {
    await withTempDir(async (root) => {
      await using a = new SessionStore({ root, driver });
      await using b = new SessionStore({ root, driver });
      using kvA = await a.openKv("bot", "s");
      using kvB = await b.openKv("bot", "s");
      for (let i = 0; i < 20; i++) {
        const before = await kvA.get(["turn"]);
        await kvB.set(["turn"], i);
        const result = await kvA.atomic().check(before).set(["turn"], -1).commit();
        equal(result.ok, false, `round ${i}: the stale check must fail`);
        const fresh = await kvA.get(["turn"]);
        ok((await kvA.atomic().check(fresh).set(["turn"], i).commit()).ok);
      }
    });
  });

  Deno.test(`[${driver}] meta.version stays at or above every committed version, and reopening continues above it`, async () => {
    await withTempDir(async (root) => {
      const path = join(root, "bot", "s", "kv.sqlite3");
      let last = "";
      const marks = new Set<number>();
      for (let reopen = 0; reopen < 3; reopen++) {
        await using store = new SessionStore({ root, driver });
        using kv = await store.openKv("bot", "s");
        for (let i = 0; i < 50; i++) {
          const { versionstamp } = await kv.set(["k", i], i);
          ok(versionstamp > last);
          last = versionstamp;
          const mark = storedMark(path);
          ok(mark >= parseInt(versionstamp.slice(0, 16), 16), "the mark covers the commit");
          marks.add(mark);
        }
      }
      // One reservation per connection here, not one meta write per commit.
      ok(marks.size <= 3, `${marks.size} reservations for 150 commits`);
    });
  });

  Deno.test(`[${driver}] a commit after another connection writes meta.version continues above it`, async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "s");
      const first = await kv.set(["k"], 1);
      const path = join(root, "bot", "s", "kv.sqlite3");
      const raw = new DatabaseSync(path);
      try {
        raw.exec("UPDATE meta SET version = version + 1");
      } finally {
        raw.close();
      }
      const mark = storedMark(path);
      const next = await kv.set(["k"], 2);
      ok(next.versionstamp > first.versionstamp);
      ok(parseInt(next.versionstamp.slice(0, 16), 16) > mark, "above the foreign mark");
    });
  });
}
