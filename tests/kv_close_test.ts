/**
 * `close()` and `[Symbol.dispose]()` (spec §2.1): every operation on a closed
 * KV rejects with `BadResource`, a second `close()` throws, dispose is quiet.
 */
import { equal, ok } from "node:assert/strict";
import { kvTargets } from "./_kv_targets.ts";
import { assertRejectsExact, assertThrowsExact, BAD_PART, BAD_RESOURCE } from "./_kv_helpers.ts";

for (const target of kvTargets) {
  const name = (what: string) => `[${target.id}] ${what}`;

  Deno.test(
    name("after close() every operation rejects with BadResource"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      await kv.set(["a"], 1);
      equal(kv.close(), undefined);
      await assertRejectsExact(
        () => kv.get(["a"]),
        "BadResource",
        BAD_RESOURCE,
      );
      await assertRejectsExact(
        () => kv.getMany([["a"]]),
        "BadResource",
        BAD_RESOURCE,
      );
      await assertRejectsExact(
        () => kv.set(["a"], 2),
        "BadResource",
        BAD_RESOURCE,
      );
      await assertRejectsExact(
        () => kv.delete(["a"]),
        "BadResource",
        BAD_RESOURCE,
      );
      await assertRejectsExact(
        () => kv.atomic().set(["a"], 2).commit(),
        "BadResource",
        BAD_RESOURCE,
      );
      await assertRejectsExact(
        () => kv.enqueue("m"),
        "BadResource",
        BAD_RESOURCE,
      );
      const error = await kv.get(["a"]).then(() => null, (e: unknown) => e);
      ok(error instanceof Deno.errors.BadResource, "a Deno.errors.BadResource");
    },
  );

  Deno.test(
    name(
      "after close() list() still returns an iterator and its first next() rejects",
    ),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      kv.close();
      const iter = kv.list({ prefix: [] });
      equal(typeof iter.next, "function");
      await assertRejectsExact(() => iter.next(), "BadResource", BAD_RESOURCE);
    },
  );

  Deno.test(
    name(
      "an iterator started before close() rejects when it reads its next batch",
    ),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      await kv.set(["a"], 1);
      await kv.set(["b"], 2);
      const iter = kv.list({ prefix: [] }, { batchSize: 1 });
      equal((await iter.next()).value?.value, 1);
      kv.close();
      await assertRejectsExact(() => iter.next(), "BadResource", BAD_RESOURCE);
    },
  );

  Deno.test(
    name("close() a second time throws BadResource synchronously"),
    async () => {
      await using t = await target.open();
      t.kv.close();
      assertThrowsExact(() => t.kv.close(), "BadResource", BAD_RESOURCE);
    },
  );

  Deno.test(
    name(
      "[Symbol.dispose]() closes, is idempotent and follows close() quietly",
    ),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      equal(kv[Symbol.dispose](), undefined);
      kv[Symbol.dispose]();
      await assertRejectsExact(
        () => kv.get(["a"]),
        "BadResource",
        BAD_RESOURCE,
      );
      assertThrowsExact(() => kv.close(), "BadResource", BAD_RESOURCE);
      kv[Symbol.dispose]();
    },
  );

  Deno.test(name("using closes the KV at the end of the block"), async () => {
    await using t = await target.open();
    {
      using kv = t.kv;
      await kv.set(["a"], 1);
    }
    await assertRejectsExact(
      () => t.kv.get(["a"]),
      "BadResource",
      BAD_RESOURCE,
    );
  });

  Deno.test(
    name("argument errors still win over BadResource after close()"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      kv.close();
      await assertRejectsExact(
        () => kv.get([null as unknown as string]),
        "TypeError",
        BAD_PART,
      );
      await assertRejectsExact(
        () => kv.set(["a"], () => {}),
        "TypeError",
        "()=>{} could not be cloned.",
      );
      assertThrowsExact(
        () => kv.list({ prefix: [] }, { limit: 0 }),
        "Error",
        "Limit must be a positive integer: received 0",
      );
      equal(typeof kv.commitVersionstamp(), "symbol");
    },
  );
}
