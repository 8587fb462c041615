import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { join, resolve } from "node:path";
import { decodeId, encodeId, isHashed, MAX_NAME, validateId } from "../src/session_id.ts";
import { SessionStore } from "../mod.ts";
import { withTempDir } from "./_helpers.ts";

const GOOD = [
  "user-42",
  "../..",
  "../../etc",
  "a/b",
  "a\\b",
  ".",
  "..",
  "...",
  "\0",
  "a\0b",
  "CON",
  "con",
  "Aux",
  "nul",
  "com1",
  "lpt9",
  "MixedCase",
  "mixedcase",
  "😀 emoji",
  "~",
  "~41",
  "+",
  "a+",
  "é",
  " ",
  "x".repeat(120),
  "x".repeat(121),
  "x".repeat(255),
  "é".repeat(127),
  "😀".repeat(63),
  "A".repeat(255),
];

Deno.test("encodeId() makes safe directory names that decode back to the id", () => {
  for (const id of GOOD) {
    validateId(id, "sessionId");
    const name = encodeId(id);
    ok(
      /^[a-z0-9_~-]+$/.test(name),
      `unsafe name ${JSON.stringify(name)} for ${JSON.stringify(id)}`,
    );
    ok(name.length <= MAX_NAME + 2, `name of ${name.length} chars`);
    ok(!/^(con|prn|aux|nul|com[0-9]|lpt[0-9])$/.test(name));
    // A long id is named by hash and decodes from its id file.
    equal(decodeId(name, isHashed(name) ? id : undefined), id);
  }
});

Deno.test("encodeId() names an id of literal characters by itself, up to MAX_NAME", () => {
  equal(encodeId("user-42_a"), "user-42_a");
  equal(encodeId("x".repeat(MAX_NAME)), "x".repeat(MAX_NAME));
  ok(isHashed(encodeId("x".repeat(MAX_NAME + 1))));
  equal(encodeId("com1"), "~63om1");
});

Deno.test("encodeId() keeps ids apart that differ only in case", () => {
  const names = new Set(GOOD.map((id) => encodeId(id).toLowerCase()));
  equal(names.size, GOOD.length);
});

Deno.test("validateId() rejects empty, too long, non-string and malformed ids with TypeError", () => {
  const bad: unknown[] = ["", "x".repeat(256), "é".repeat(128), "\uD800", 42, null, undefined, {}];
  for (const id of bad) {
    throws(() => validateId(id, "sessionId"), TypeError, `accepted ${String(id)}`);
  }
});

Deno.test("decodeId() refuses names encodeId() would not produce", () => {
  for (const name of ["A", "~61", "a+", "..", ".", "a/b", "~zz", "~c3", "", "con"]) {
    equal(decodeId(name), undefined, JSON.stringify(name));
  }
  const long = "x".repeat(200);
  equal(decodeId(encodeId(long)), undefined, "a hashed name needs its id file");
  equal(decodeId(encodeId(long), "y".repeat(200)), undefined, "an id file must match the hash");
});

Deno.test("SessionStore keeps every session inside root, whatever the ids", async () => {
  await withTempDir(async (root) => {
    const store = new SessionStore({ root });
    const ids = GOOD; // 255-byte ids included: those are named by hash.
    for (const bot of ["../..", "bot"]) {
      for (const id of ids) {
        using kv = await store.openKv(bot, id);
        await kv.set(["id"], id);
      }
    }
    await store.close();
    // Every file under root is inside root, and the tree holds exactly the sessions.
    const files: string[] = [];
    const walk = async (dir: string) => {
      for await (const e of Deno.readDir(dir)) {
        const path = join(dir, e.name);
        ok(resolve(path).startsWith(resolve(root) + "/"));
        if (e.isDirectory) await walk(path);
        else if (e.name === "kv.sqlite3") files.push(path);
      }
    };
    await walk(root);
    equal(files.length, ids.length * 2);
    const again = new SessionStore({ root });
    const listed: string[] = [];
    for await (const info of again.sessions({ botId: "../.." })) listed.push(info.sessionId);
    deepEqual(listed.sort(), [...ids].sort(), "sessions() gives the original ids back");
    for (const id of ids) {
      using kv = await again.openKv("../..", id);
      equal((await kv.get(["id"])).value, id);
    }
    await again.close();
  });
});

Deno.test("SessionStore.openKv() rejects bad ids with TypeError and creates nothing", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    for (const [bot, session] of [["", "s"], ["b", ""], ["b", "x".repeat(256)], ["b", 7]]) {
      await rejects(store.openKv(bot as string, session as string), TypeError);
    }
    deepEqual([...Deno.readDirSync(root)], []);
  });
});
