/**
 * `atomic()`: builder validation, checks, mutation order, sum/min/max, the
 * `then` trap, the limits of spec §6 and versionstamp properties (§2.6, §3).
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { kvTargets } from "./_kv_targets.ts";
import {
  assertRejectsExact,
  assertThrowsExact,
  isU64,
  listKeys,
  sleep,
  STAMP_RE,
  stampOf,
  u64Ctor,
  versionGap,
  WRITE_TOO_LARGE,
} from "./_kv_helpers.ts";

const MAX_U64 = 2n ** 64n - 1n;
const NON_U64_VALUE = (op: string) =>
  `Failed to perform '${op}' mutation on a non-U64 value in the database`;
const NON_U64_OPERAND = (op: string) => `Failed to perform '${op}' mutation on a non-U64 operand`;

/** A mutation whose value is not a KvU64 (allowed by Deno KV for `sum`). */
function rawMutation(
  type: "sum" | "min" | "max",
  key: Deno.KvKey,
  value: unknown,
): Deno.KvMutation {
  return { type, key, value } as unknown as Deno.KvMutation;
}

/** A string of `n` chars whose key `[s]` encodes to `n + 2` bytes. */
const x = (n: number, tag = "") => (tag + "x".repeat(n)).slice(0, n);

for (const target of kvTargets) {
  const name = (what: string) => `[${target.id}] ${what}`;

  Deno.test(name("builder methods return the same operation"), async () => {
    await using t = await target.open();
    const op = t.kv.atomic();
    const same = [
      op.check({ key: ["a"], versionstamp: null }),
      op.set(["a"], 1),
      op.delete(["b"]),
      op.sum(["c"], 1n),
      op.min(["d"], 1n),
      op.max(["e"], 1n),
      op.mutate({ type: "delete", key: ["f"] }),
    ];
    ok(same.every((r) => r === op));
    stampOf(await op.commit());
  });

  Deno.test(
    name("mutate() validates each mutation synchronously"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const mutate = (m: unknown) => () => kv.atomic().mutate(m as Deno.KvMutation);
      for (const type of ["set", "sum", "min", "max"]) {
        assertThrowsExact(
          mutate({ type, key: ["k"] }),
          "TypeError",
          `Invalid mutation '${type}' without value`,
        );
      }
      assertThrowsExact(
        mutate({ type: "delete", key: ["k"], value: "123" }),
        "TypeError",
        "Invalid mutation 'delete' with value",
      );
      assertThrowsExact(
        mutate({ type: "foobar", key: ["k"] }),
        "TypeError",
        "Invalid mutation type",
      );
      // A falsy value on delete and an explicit undefined on set are fine.
      await kv.set(["k"], 1);
      stampOf(
        await kv.atomic().mutate(
          {
            type: "delete",
            key: ["k"],
            value: 0,
          } as unknown as Deno.KvMutation,
        ).commit(),
      );
      equal((await kv.get(["k"])).versionstamp, null);
      const s = stampOf(
        await kv.atomic().mutate({ type: "set", key: ["u"], value: undefined })
          .commit(),
      );
      deepStrictEqual(await kv.get(["u"]), {
        key: ["u"],
        value: undefined,
        versionstamp: s,
      });
    },
  );

  Deno.test(
    name("sum(), min() and max() validate their operand synchronously"),
    async () => {
      await using t = await target.open();
      const op = t.kv.atomic();
      for (const method of ["sum", "min", "max"] as const) {
        const call = (n: unknown) => () => op[method](["k"], n as bigint);
        assertThrowsExact(
          call(-1n),
          "RangeError",
          "Value must be a positive bigint: received -1",
        );
        assertThrowsExact(
          call(2n ** 64n),
          "RangeError",
          "Value must fit in a 64-bit unsigned integer",
        );
        assertThrowsExact(
          call(1),
          "TypeError",
          "Value must be a bigint: received number",
        );
        assertThrowsExact(
          call("1"),
          "TypeError",
          "Value must be a bigint: received string",
        );
      }
    },
  );

  Deno.test(
    name("key errors come from commit(), not from the builder"),
    async () => {
      await using t = await target.open();
      const op = t.kv.atomic().set([], 1);
      await assertRejectsExact(
        () => op.commit(),
        "TypeError",
        "key cannot be empty",
      );
      const big = t.kv.atomic().check({ key: [x(2047)], versionstamp: null });
      await assertRejectsExact(
        () => big.commit(),
        "TypeError",
        WRITE_TOO_LARGE,
      );
      const badStamp = t.kv.atomic().check({ key: ["a"], versionstamp: "zz" });
      await assertRejectsExact(
        () => badStamp.commit(),
        "TypeError",
        "Invalid check",
      );
    },
  );

  Deno.test(
    name("await kv.atomic() is an error: the operation is not a promise"),
    async () => {
      await using t = await target.open();
      const message = "'Deno.AtomicOperation' is not a promise: did you forget to call 'commit()'";
      const op = t.kv.atomic().set(["a"], 1);
      equal(typeof (op as unknown as { then: unknown }).then, "function");
      assertThrowsExact(
        () => (op as unknown as { then(): void }).then(),
        "TypeError",
        message,
      );
      await assertRejectsExact(async () => await op, "TypeError", message);
      equal(
        (await t.kv.get(["a"])).versionstamp,
        null,
        "nothing was committed",
      );
    },
  );

  Deno.test(
    name("a check passes when the versionstamp matches; null means absent"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const s = stampOf(await kv.set(["present"], 1));
      const check = (key: Deno.KvKey, versionstamp: unknown) =>
        kv.atomic().check({ key, versionstamp } as Deno.AtomicCheck).commit();
      equal((await check(["present"], s)).ok, true);
      equal((await check(["present"], null)).ok, false);
      equal((await check(["absent"], null)).ok, true);
      equal((await check(["absent"], undefined)).ok, true);
      equal(
        (await kv.atomic().check(
          { key: ["absent"] } as unknown as Deno.AtomicCheck,
        )
          .commit()).ok,
        true,
      );
      equal((await check(["absent"], s)).ok, false);
      // Versionstamp hex is case-insensitive.
      equal((await check(["present"], s.toUpperCase())).ok, true);
      // A well-formed stamp that matches nothing just fails.
      equal((await check(["present"], "00".repeat(10))).ok, false);
    },
  );

  Deno.test(name("a malformed check versionstamp is rejected"), async () => {
    await using t = await target.open();
    const kv = t.kv;
    await kv.set(["a"], 1);
    for (
      const bad of ["", "xx".repeat(10), "aa".repeat(11), "aa".repeat(9) + "a"]
    ) {
      await assertRejectsExact(
        () => kv.atomic().check({ key: ["a"], versionstamp: bad }).commit(),
        "TypeError",
        "Invalid check",
      );
    }
    await assertRejectsExact(
      () =>
        kv.atomic().check({ key: ["a"], versionstamp: 5 as unknown as string })
          .commit(),
      "TypeError",
      "serde_v8 error: invalid type; expected: string, got: Number",
    );
  });

  Deno.test(
    name("a failed check writes nothing and returns exactly { ok: false }"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const s = stampOf(await kv.set(["a"], 1));
      const result = await kv.atomic()
        .set(["b"], 1)
        .check({ key: ["a"], versionstamp: null })
        .sum(["c"], 1n)
        .delete(["a"])
        .commit();
      deepStrictEqual(result, { ok: false });
      deepStrictEqual(Object.keys(result), ["ok"]);
      deepStrictEqual(await kv.get(["a"]), {
        key: ["a"],
        value: 1,
        versionstamp: s,
      });
      deepStrictEqual(await listKeys(kv, { prefix: [] }), [["a"]]);
    },
  );

  Deno.test(
    name("checks see the state before the operation's own mutations"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const r = await kv.atomic().set(["cc"], 1).check({
        key: ["cc"],
        versionstamp: null,
      }).commit();
      equal(r.ok, true);
      const s = stampOf(r);
      const r2 = await kv.atomic().delete(["cc"]).check({
        key: ["cc"],
        versionstamp: s,
      }).commit();
      equal(r2.ok, true);
      equal((await kv.get(["cc"])).versionstamp, null);
    },
  );

  Deno.test(name("several checks on one key must all pass"), async () => {
    await using t = await target.open();
    const s = stampOf(await t.kv.set(["a"], 1));
    const both = (v2: string | null) =>
      t.kv.atomic()
        .check({ key: ["a"], versionstamp: s }, {
          key: ["a"],
          versionstamp: v2,
        })
        .set(["b"], 1)
        .commit();
    equal((await both(null)).ok, false);
    equal((await t.kv.get(["b"])).versionstamp, null);
    equal((await both(s)).ok, true);
    equal((await t.kv.get(["b"])).value, 1);
  });

  Deno.test(name("mutations apply in builder order"), async () => {
    await using t = await target.open();
    const kv = t.kv;
    const U64 = await u64Ctor(target);
    await kv.atomic().set(["a"], 1).set(["a"], 2).commit();
    equal((await kv.get(["a"])).value, 2);
    await kv.atomic().set(["b"], 1).delete(["b"]).set(["b"], 3).commit();
    equal((await kv.get(["b"])).value, 3);
    await kv.atomic().delete(["c"]).set(["c"], 2).commit();
    equal((await kv.get(["c"])).value, 2);
    await kv.atomic().set(["d"], 1).delete(["d"]).commit();
    equal((await kv.get(["d"])).versionstamp, null);
    await kv.atomic().sum(["e"], 5n).sum(["e"], 7n).commit();
    equal(((await kv.get(["e"])).value as Deno.KvU64).value, 12n);
    await kv.atomic().set(["f"], new U64(10n)).sum(["f"], 1n).commit();
    equal(((await kv.get(["f"])).value as Deno.KvU64).value, 11n);
    await kv.atomic().sum(["g"], 5n).set(["g"], "text").commit();
    equal((await kv.get(["g"])).value, "text");
    await kv.atomic()
      .mutate({ type: "set", key: ["h"], value: new U64(4n) }, {
        type: "max",
        key: ["h"],
        value: new U64(9n),
      })
      .min(["h"], 6n)
      .commit();
    equal(((await kv.get(["h"])).value as Deno.KvU64).value, 6n);
  });

  Deno.test(
    name("all keys written by one commit share its versionstamp"),
    async () => {
      await using t = await target.open();
      await t.kv.set(["untouched"], 0);
      const s = stampOf(
        await t.kv.atomic().set(["a"], 1).sum(["b"], 1n).max(["c"], 1n).min([
          "d",
        ], 1n).set(["e"], 2).commit(),
      );
      const entries = await t.kv.getMany([["a"], ["b"], ["c"], ["d"], ["e"], [
        "untouched",
      ]]);
      deepStrictEqual(entries.slice(0, 5).map((e) => e.versionstamp), [
        s,
        s,
        s,
        s,
        s,
      ]);
      ok(entries[5]!.versionstamp! < s);
    },
  );

  Deno.test(
    name("an empty or checks-only atomic commits with a new versionstamp"),
    async () => {
      await using t = await target.open();
      const s0 = stampOf(await t.kv.set(["a"], 1));
      const r1 = await t.kv.atomic().commit();
      deepStrictEqual(Object.keys(r1), ["ok", "versionstamp"]);
      const s1 = stampOf(r1);
      const s2 = stampOf(
        await t.kv.atomic().check({ key: ["a"], versionstamp: s0 }).commit(),
      );
      ok(s0 < s1 && s1 < s2);
      equal(
        (await t.kv.get(["a"])).versionstamp,
        s0,
        "the checked key is not touched",
      );
    },
  );

  Deno.test(
    name("sum, min and max on a missing key store the operand"),
    async () => {
      await using t = await target.open();
      const U64 = await u64Ctor(target);
      await t.kv.atomic().sum(["s"], 5n).min(["mn"], 7n).max(["mx"], 9n)
        .commit();
      await t.kv.atomic().mutate({
        type: "sum",
        key: ["s2"],
        value: new U64(3n),
      }).commit();
      for (
        const [key, want] of [[["s"], 5n], [["mn"], 7n], [["mx"], 9n], [
          ["s2"],
          3n,
        ]] as const
      ) {
        const value = (await t.kv.get(key)).value;
        ok(value instanceof U64, `${key} holds a KvU64`);
        equal((value as Deno.KvU64).value, want);
      }
    },
  );

  Deno.test(
    name("sum wraps modulo 2^64; min and max keep the smaller and larger"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const U64 = await u64Ctor(target);
      const read = async (key: Deno.KvKey) => ((await kv.get(key)).value as Deno.KvU64).value;
      await kv.set(["w"], new U64(MAX_U64));
      await kv.atomic().sum(["w"], 10n).commit();
      equal(await read(["w"]), 9n);
      await kv.atomic().sum(["w"], MAX_U64).commit();
      equal(await read(["w"]), 8n);
      await kv.atomic().min(["w"], 9n).commit();
      equal(await read(["w"]), 8n);
      await kv.atomic().min(["w"], 2n).commit();
      equal(await read(["w"]), 2n);
      await kv.atomic().max(["w"], 1n).commit();
      equal(await read(["w"]), 2n);
      await kv.atomic().max(["w"], MAX_U64).commit();
      equal(await read(["w"]), MAX_U64);
      await kv.atomic().min(["w"], 0n).commit();
      equal(await read(["w"]), 0n);
    },
  );

  Deno.test(
    name("sum, min and max with a KvU64 fail on any other stored type"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const stored: unknown[] = [
        "str",
        5,
        5n,
        { value: 5n },
        new Uint8Array(8),
        null,
      ];
      for (const [i, value] of stored.entries()) {
        const s = stampOf(await kv.set(["v", i], value));
        for (const op of ["sum", "min", "max"] as const) {
          await assertRejectsExact(
            () => kv.atomic()[op](["v", i], 1n).commit(),
            "TypeError",
            NON_U64_VALUE(op),
          );
        }
        equal((await kv.get(["v", i])).versionstamp, s);
      }
    },
  );

  Deno.test(
    name("min and max need a KvU64 operand, even on a missing key"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const U64 = await u64Ctor(target);
      await kv.set(["u"], new U64(5n));
      for (const op of ["min", "max"] as const) {
        for (const operand of [1, 1n, "1"]) {
          for (const key of [["missing"], ["u"]]) {
            await assertRejectsExact(
              () => kv.atomic().mutate(rawMutation(op, key, operand)).commit(),
              "TypeError",
              NON_U64_OPERAND(op),
            );
          }
        }
      }
      equal((await kv.get(["missing"])).versionstamp, null);
      equal(((await kv.get(["u"])).value as Deno.KvU64).value, 5n);
    },
  );

  Deno.test(
    name("sum with a number or bigint operand adds like JavaScript"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const U64 = await u64Ctor(target);
      const sum = (key: Deno.KvKey, operand: unknown) =>
        kv.atomic().mutate(rawMutation("sum", key, operand)).commit();
      const value = async (key: Deno.KvKey) => (await kv.get(key)).value;

      stampOf(await sum(["n"], 1));
      equal(await value(["n"]), 1, "a missing key takes the number as it is");
      stampOf(await sum(["n"], 2));
      equal(await value(["n"]), 3);
      await kv.set(["f"], 0.1);
      await sum(["f"], 0.2);
      equal(await value(["f"]), 0.1 + 0.2);
      await kv.set(["inf"], Infinity);
      await sum(["inf"], -Infinity);
      ok(Number.isNaN(await value(["inf"])));

      stampOf(await sum(["b"], 5n));
      equal(await value(["b"]), 5n);
      await sum(["b"], 2n ** 100n);
      equal(await value(["b"]), 2n ** 100n + 5n, "bigints do not wrap");
      await sum(["b"], -(2n ** 100n));
      equal(await value(["b"]), 5n);

      // A bigint operand on a stored KvU64 gives a KvU64 and wraps.
      await kv.set(["u"], new U64(9n));
      await sum(["u"], 2n);
      let u = await value(["u"]);
      ok(u instanceof U64);
      equal((u as Deno.KvU64).value, 11n);
      await kv.set(["u"], new U64(MAX_U64));
      await sum(["u"], 2n);
      u = await value(["u"]);
      ok(u instanceof U64);
      equal((u as Deno.KvU64).value, 1n);
    },
  );

  Deno.test(
    name("sum rejects operand and stored types it cannot add"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const U64 = await u64Ctor(target);
      await kv.set(["u"], new U64(5n));
      await kv.set(["n"], 5);
      await kv.set(["b"], 5n);
      await kv.set(["s"], "text");
      await kv.set(["o"], { a: 1 });
      const cases: [Deno.KvKey, unknown, string][] = [
        [["u"], 2, "Cannot sum KvU64 with Number"],
        [["u"], -2n, "Cannot sum KvU64 with BigInt"],
        [["u"], 2n ** 64n, "Cannot sum KvU64 with BigInt"],
        [["n"], 2n, "Cannot sum Number with BigInt"],
        [["b"], 2, "Cannot sum BigInt with Number"],
        [["n"], new U64(2n), NON_U64_VALUE("sum")],
        [["s"], 2, "unsupported value type"],
        [["o"], 2, "unsupported value type"],
        [["n"], "x", "Some of the parameters are not valid V8 values"],
        [["missing"], "x", "Some of the parameters are not valid V8 values"],
      ];
      for (const [key, operand, message] of cases) {
        await assertRejectsExact(
          () => kv.atomic().mutate(rawMutation("sum", key, operand)).commit(),
          "TypeError",
          message,
        );
      }
      equal(((await kv.get(["u"])).value as Deno.KvU64).value, 5n);
      equal((await kv.get(["n"])).value, 5);
      equal((await kv.get(["b"])).value, 5n);
      equal((await kv.get(["missing"])).versionstamp, null);
    },
  );

  Deno.test(name("sum, min and max clear an earlier expireIn"), async () => {
    await using t = await target.open();
    const U64 = await u64Ctor(target);
    for (const op of ["sum", "min", "max"] as const) {
      await t.kv.set([op], new U64(5n), { expireIn: 50 });
      await t.kv.atomic()[op]([op], 5n).commit();
    }
    await sleep(100);
    const values = (await t.kv.getMany([["sum"], ["min"], ["max"]])).map((e) =>
      (e.value as Deno.KvU64 | null)?.value
    );
    deepStrictEqual(values, [10n, 5n, 5n]);
  });

  Deno.test(
    name(
      target.oracle
        ? "a mutation failing mid-commit keeps the earlier mutations (Deno KV is not atomic here)"
        : "a mutation failing mid-commit writes nothing and does not move the versionstamp",
    ),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      await kv.set(["str"], "text");
      const before = stampOf(await kv.set(["mark"], 0));
      for (let i = 0; i < 10; i++) {
        await assertRejectsExact(
          () =>
            kv.atomic().set(["A", i], 1).sum(["str"], 1n).set(["B", i], 1)
              .commit(),
          "TypeError",
          NON_U64_VALUE("sum"),
        );
      }
      const after = stampOf(await kv.set(["mark"], 1));
      const gap = versionGap(before, after);
      deepStrictEqual(await listKeys(kv, { prefix: ["B"] }), []);
      equal((await kv.get(["str"])).value, "text");
      if (target.oracle) {
        equal((await listKeys(kv, { prefix: ["A"] })).length, 10);
        ok(gap >= 11n, `each failed commit advanced the version (gap ${gap})`);
      } else {
        deepStrictEqual(await listKeys(kv, { prefix: ["A"] }), []);
        ok(
          gap >= 1n && gap <= 9n,
          `only the marker moved the version (gap ${gap})`,
        );
      }
    },
  );

  Deno.test(name("an atomic takes at most 100 checks"), async () => {
    await using t = await target.open();
    const checks = (n: number) => {
      const op = t.kv.atomic();
      for (let i = 0; i < n; i++) {
        op.check({ key: ["c", i], versionstamp: null });
      }
      return op;
    };
    stampOf(await checks(100).commit());
    await assertRejectsExact(
      () => checks(101).commit(),
      "TypeError",
      "Too many checks (max 100)",
    );
  });

  Deno.test(
    name("an atomic takes at most 1000 mutations and enqueues together"),
    async () => {
      await using t = await target.open();
      const ops = (n: number, kind: "set" | "delete") => {
        const op = t.kv.atomic();
        for (let i = 0; i < n; i++) {
          kind === "set" ? op.set(["m", i], 1) : op.delete(["m", i]);
        }
        return op;
      };
      const message = "Too many mutations (max 1000)";
      stampOf(await ops(1000, "set").commit());
      await assertRejectsExact(
        () => ops(1001, "set").commit(),
        "TypeError",
        message,
      );
      await assertRejectsExact(
        () => ops(1001, "delete").commit(),
        "TypeError",
        message,
      );
      await assertRejectsExact(
        () => ops(999, "set").enqueue("a").enqueue("b").commit(),
        "TypeError",
        message,
      );
      equal((await listKeys(t.kv, { prefix: ["m"] })).length, 1000);
    },
  );

  Deno.test(
    name("the total mutation size of an atomic is at most 819200 bytes"),
    async () => {
      await using t = await target.open();
      // A set counts its key twice plus its value: [i] encodes to 9 bytes, so
      // 12 x (18 + 65536) + (18 + 32534) = 819200 exactly.
      const build = (lastValueBytes: number) => {
        const op = t.kv.atomic();
        for (let i = 0; i < 12; i++) op.set([i], new Uint8Array(65536));
        return op.set([12], new Uint8Array(lastValueBytes));
      };
      const message = "Total mutation size too large (max 819200 bytes)";
      stampOf(await build(32534).commit());
      await assertRejectsExact(
        () => build(32535).commit(),
        "TypeError",
        message,
      );
      // Check keys count once: a 9-byte check pushes the exact fit over.
      await assertRejectsExact(
        () => build(32534).check({ key: [99], versionstamp: null }).commit(),
        "TypeError",
        message,
      );
      const many = t.kv.atomic();
      for (let i = 0; i < 1000; i++) many.set(["s", i], "x".repeat(3000));
      await assertRejectsExact(() => many.commit(), "TypeError", message);
    },
  );

  Deno.test(
    name(
      "the total key size of an atomic's value mutations is at most 81920 bytes",
    ),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      // [s] with a 2046-char s encodes to 2048 bytes: 40 of them are 81920.
      const keys = Array.from({ length: 41 }, (_, i) => [x(2046, String(i))]);
      const build = (n: number, extra?: Deno.KvKey) => {
        const op = kv.atomic();
        for (const key of keys.slice(0, n)) op.set(key, 1);
        if (extra) op.set(extra, 1);
        return op;
      };
      const message = "Total key size too large (max 81920 bytes)";
      stampOf(await build(40).commit());
      await assertRejectsExact(
        () => build(40, [true]).commit(),
        "TypeError",
        message,
      );
      await assertRejectsExact(() => build(41).commit(), "TypeError", message);
      await assertRejectsExact(
        () => {
          const op = kv.atomic();
          for (const key of keys) op.sum(key, 1n);
          return op.commit();
        },
        "TypeError",
        message,
      );
      // Deletes and checks do not count.
      const op = kv.atomic();
      for (const key of keys) op.delete(key);
      for (const key of keys.slice(0, 40)) {
        op.check({ key, versionstamp: null });
      }
      equal((await op.commit()).ok, false);
      const deletes = kv.atomic();
      for (const key of keys) deletes.delete(key);
      stampOf(await deletes.commit());
      deepStrictEqual(await listKeys(kv, { prefix: [] }), []);
    },
  );

  Deno.test(
    name("commit() reports the first failing validation in Deno KV's order"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const checks = (n: number) => {
        const op = kv.atomic();
        for (let i = 0; i < n; i++) {
          op.check({ key: ["c", i], versionstamp: null });
        }
        return op;
      };
      const badPart = [null] as unknown as Deno.KvKey;
      const huge = [2n ** 2048n];
      const cases: [string, () => Deno.AtomicOperation, string][] = [
        [
          "bad key part before check count",
          () => checks(101).set(badPart, 1),
          "expected string, number, bigint, ArrayBufferView, boolean",
        ],
        [
          "check stamp type before check count",
          () =>
            checks(101).check({
              key: ["z"],
              versionstamp: 5 as unknown as string,
            }),
          "serde_v8 error: invalid type; expected: string, got: Number",
        ],
        [
          "check count before empty key",
          () => checks(101).set([], 1),
          "Too many checks (max 100)",
        ],
        ["check count before mutation count", () => {
          const op = checks(101);
          for (let i = 0; i < 1001; i++) op.set(["m", i], 1);
          return op;
        }, "Too many checks (max 100)"],
        ["mutation count before check format", () => {
          const op = kv.atomic().check({ key: ["c"], versionstamp: "zz" });
          for (let i = 0; i < 1001; i++) op.set(["m", i], 1);
          return op;
        }, "Too many mutations (max 1000)"],
        [
          "check format before empty key",
          () => kv.atomic().check({ key: ["c"], versionstamp: "zz" }).set([], 1),
          "Invalid check",
        ],
        [
          "check format before an earlier key size",
          () =>
            kv.atomic().set([x(3000)], 1).check({
              key: ["c"],
              versionstamp: "zz",
            }),
          "Invalid check",
        ],
        [
          "check format before bigint range",
          () => kv.atomic().set(huge, 1).check({ key: ["c"], versionstamp: "zz" }),
          "Invalid check",
        ],
        [
          "key size before value size",
          () => kv.atomic().set([x(3000)], new Uint8Array(70000)),
          WRITE_TOO_LARGE,
        ],
        [
          "every key size before any value size",
          () => kv.atomic().set(["v"], new Uint8Array(70000)).set([x(3000)], 1),
          WRITE_TOO_LARGE,
        ],
        [
          "check keys before mutation keys",
          () =>
            kv.atomic().set([], 1).check({
              key: [x(3000)],
              versionstamp: null,
            }),
          WRITE_TOO_LARGE,
        ],
        [
          "mutation keys in order: empty first",
          () => kv.atomic().set([], 1).set([x(3000)], 1),
          "key cannot be empty",
        ],
        [
          "mutation keys in order: size first",
          () => kv.atomic().set([x(3000)], 1).set([], 1),
          WRITE_TOO_LARGE,
        ],
        ["total mutation size before total key size", () => {
          const op = kv.atomic();
          for (let i = 0; i < 80; i++) {
            op.set([x(1100, String(i))], new Uint8Array(10000));
          }
          return op;
        }, "Total mutation size too large (max 819200 bytes)"],
      ];
      for (const [label, build, message] of cases) {
        await assertRejectsExact(() => build().commit(), "TypeError", message)
          .catch((e) => {
            throw new Error(`${label}: ${e.message}`);
          });
      }
      deepStrictEqual(await listKeys(kv, { prefix: [] }), []);
    },
  );

  Deno.test(
    name("versionstamps are 20 lowercase hex digits ending in 0000"),
    async () => {
      await using t = await target.open();
      const U64 = await u64Ctor(target);
      const stamps = [
        stampOf(await t.kv.set(["a"], 1)),
        stampOf(await t.kv.atomic().sum(["u"], 1n).commit()),
        stampOf(await t.kv.atomic().set(["b"], new U64(1n)).commit()),
        (await t.kv.get(["a"])).versionstamp!,
      ];
      for (const s of stamps) {
        ok(STAMP_RE.test(s), s);
        ok(s.endsWith("0000"), s);
      }
    },
  );

  Deno.test(
    name("a fresh database's first versionstamp is small"),
    async () => {
      await using t = await target.open();
      const s = stampOf(await t.kv.set(["a"], 1));
      const v = versionGap("00000000000000000000", s);
      ok(v >= 1n && v <= 9n, `first version ${v}`);
    },
  );

  Deno.test(name("versionstamps strictly increase in call order"), async () => {
    await using t = await target.open();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => t.kv.set(["c", i], i)),
    );
    const stamps = results.map(stampOf);
    for (let i = 1; i < stamps.length; i++) {
      ok(stamps[i - 1]! < stamps[i]!, `${stamps[i - 1]} < ${stamps[i]}`);
      const gap = versionGap(stamps[i - 1]!, stamps[i]!);
      ok(
        gap >= 1n && gap <= 9n,
        `one commit moves the version by 1 to 9, not ${gap}`,
      );
    }
  });

  Deno.test(
    name("a failed check or a rejected commit does not advance the version"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const before = stampOf(await kv.set(["a"], 1));
      for (let i = 0; i < 10; i++) {
        deepStrictEqual(
          await kv.atomic().check({ key: ["a"], versionstamp: null }).set(
            ["b"],
            1,
          ).commit(),
          { ok: false },
        );
        await assertRejectsExact(
          () => kv.set([], 1),
          "TypeError",
          "key cannot be empty",
        );
        await assertRejectsExact(
          () => kv.set([x(3000)], 1),
          "TypeError",
          WRITE_TOO_LARGE,
        );
        await assertRejectsExact(
          () => kv.atomic().check({ key: ["a"], versionstamp: "zz" }).commit(),
          "TypeError",
          "Invalid check",
        );
      }
      const after = stampOf(await kv.set(["a"], 2));
      const gap = versionGap(before, after);
      ok(
        gap >= 1n && gap <= 9n,
        `only the last set moved the version (gap ${gap})`,
      );
    },
  );

  Deno.test(
    name("deleting a missing key and empty atomics still advance the version"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const before = stampOf(await kv.set(["a"], 1));
      for (let i = 0; i < 10; i++) await kv.delete(["missing", i]);
      const afterDeletes = stampOf(await kv.set(["a"], 2));
      ok(
        versionGap(before, afterDeletes) >= 11n,
        "ten deletes and a set are eleven commits",
      );
      for (let i = 0; i < 10; i++) stampOf(await kv.atomic().commit());
      const afterEmpty = stampOf(await kv.set(["a"], 3));
      ok(versionGap(afterDeletes, afterEmpty) >= 11n);
    },
  );

  Deno.test(
    name("a top-level KvU64 written by sum reads back as the target's KvU64"),
    async () => {
      await using t = await target.open();
      const U64 = await u64Ctor(target);
      await t.kv.atomic().sum(["n"], 1n).commit();
      const [entry] = await t.kv.getMany([["n"]]);
      ok(isU64(entry!.value));
      ok(entry!.value instanceof U64);
    },
  );
}
