/**
 * `list()`: the four selector forms, ranges, options and their errors
 * (synchronous or on the first `next()`), and cursors (spec §2.8).
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { kvTargets } from "./_kv_targets.ts";
import {
  assertRejectsExact,
  assertThrowsExact,
  BAD_PART,
  collect,
  listKeys,
  listWithCursors,
  setAll,
} from "./_kv_helpers.ts";

/** The keys of the spec's cursor examples, in Deno KV order. */
const SAMPLE: Deno.KvKey[] = [
  ["a"],
  ["a", new Uint8Array([0])],
  ["a", "a"],
  ["a", "b"],
  ["a", "c"],
  ["a", "d"],
  ["a", "e", "x"],
  ["a", "ex"],
  ["a", 1n],
  ["a", 1],
  ["a", true],
  ["b"],
  ["b", "a"],
];

const under = (keys: Deno.KvKey[], from: number, to: number) => keys.slice(from, to);

/** base64url with padding, as Deno KV writes cursors. */
const b64 = (binary: string) => btoa(binary).replaceAll("+", "-").replaceAll("/", "_");

const SELECTORS: [string, Deno.KvListSelector, Deno.KvKey[]][] = [
  ["prefix", { prefix: ["a"] }, under(SAMPLE, 1, 11)],
  ["prefix+start", { prefix: ["a"], start: ["a", "c"] }, under(SAMPLE, 4, 11)],
  ["prefix+end", { prefix: ["a"], end: ["a", "d"] }, under(SAMPLE, 1, 5)],
  ["start+end", { start: ["a"], end: ["a", "d"] }, under(SAMPLE, 0, 5)],
];

for (const target of kvTargets) {
  const name = (what: string) => `[${target.id}] ${what}`;

  Deno.test(
    name(
      "list({ prefix }) yields keys strictly under the prefix, by whole parts",
    ),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }),
        under(SAMPLE, 1, 11),
      );
      deepStrictEqual(await listKeys(t.kv, { prefix: ["a", "e"] }), [[
        "a",
        "e",
        "x",
      ]]);
      deepStrictEqual(await listKeys(t.kv, { prefix: ["a", "x"] }), []);
      deepStrictEqual(await listKeys(t.kv, { prefix: [] }), SAMPLE);
    },
  );

  Deno.test(
    name("list() covers each selector form's range, forwards and in reverse"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      for (const [label, selector, expected] of SELECTORS) {
        deepStrictEqual(await listKeys(t.kv, selector), expected, label);
        deepStrictEqual(
          await listKeys(t.kv, selector, { reverse: true }),
          [...expected].reverse(),
          label,
        );
      }
    },
  );

  Deno.test(
    name("start need not exist and a range may cover shorter keys"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"], start: ["a", "bb"] }),
        under(SAMPLE, 4, 11),
      );
      deepStrictEqual(
        await listKeys(t.kv, { start: ["a", "z"], end: ["b", "a"] }),
        [
          ["a", 1n],
          ["a", 1],
          ["a", true],
          ["b"],
        ],
      );
      deepStrictEqual(
        await listKeys(t.kv, { start: [], end: ["a", "a"] }),
        under(SAMPLE, 0, 2),
      );
      deepStrictEqual(await listKeys(t.kv, { start: ["a"], end: ["a"] }), []);
    },
  );

  Deno.test(name("limit caps the number of entries"), async () => {
    await using t = await target.open();
    await setAll(t.kv, SAMPLE);
    for (const [label, selector, expected] of SELECTORS) {
      deepStrictEqual(
        await listKeys(t.kv, selector, { limit: 2 }),
        expected.slice(0, 2),
        label,
      );
      deepStrictEqual(
        await listKeys(t.kv, selector, { limit: 2, reverse: true }),
        [...expected].reverse().slice(0, 2),
        label,
      );
      deepStrictEqual(
        await listKeys(t.kv, selector, { limit: 100 }),
        expected,
        label,
      );
    }
  });

  Deno.test(
    name("batchSize does not change what is listed"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      for (const batchSize of [1, 2, 3, 500, 1000]) {
        for (const reverse of [false, true]) {
          const opts = { batchSize, reverse };
          const expected = reverse ? [...SAMPLE].reverse() : SAMPLE;
          deepStrictEqual(await listKeys(t.kv, { prefix: [] }, opts), expected);
          deepStrictEqual(
            await listKeys(t.kv, { prefix: [] }, { ...opts, limit: 5 }),
            expected.slice(0, 5),
          );
        }
      }
      // Without batchSize, a large limit is fine (the implicit batch is capped).
      deepStrictEqual(
        await listKeys(t.kv, { prefix: [] }, { limit: 5000 }),
        SAMPLE,
      );
    },
  );

  Deno.test(
    name("entries carry a fresh key, the value and the versionstamp"),
    async () => {
      await using t = await target.open();
      const key = ["k", 1];
      const s = (await t.kv.set(key, { v: 1 })).versionstamp;
      const entries = await collect(t.kv.list({ prefix: ["k"] }));
      deepStrictEqual(entries, [{
        key: ["k", 1],
        value: { v: 1 },
        versionstamp: s,
      }]);
      ok(entries[0]!.key !== key);
      deepStrictEqual(Object.keys(entries[0]!), [
        "key",
        "value",
        "versionstamp",
      ]);
    },
  );

  Deno.test(
    name("a string prefix is split into characters"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, [["a", "b"], ["a", "b", "x"], ["ab", "x"], ["b"]]);
      const asString = (s: string) => s as unknown as Deno.KvKey;
      deepStrictEqual(await listKeys(t.kv, { prefix: asString("ab") }), [[
        "a",
        "b",
        "x",
      ]]);
      deepStrictEqual(
        await listKeys(t.kv, { start: asString("ab"), end: asString("b") }),
        [
          ["a", "b"],
          ["a", "b", "x"],
          ["ab", "x"],
        ],
      );
    },
  );

  Deno.test(
    name("selector shape errors are thrown synchronously by list()"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const bad = (s: unknown) => () => kv.list(s as Deno.KvListSelector);
      assertThrowsExact(
        bad({ prefix: [], start: ["a"], end: ["b"] }),
        "TypeError",
        "Selector can not specify both 'start' and 'end' key when specifying 'prefix'",
      );
      const either = "Selector must specify either 'prefix' or both 'start' and 'end' key";
      assertThrowsExact(bad({ start: ["a"] }), "TypeError", either);
      assertThrowsExact(bad({ end: ["a"] }), "TypeError", either);
      assertThrowsExact(bad({}), "TypeError", either);
      assertThrowsExact(bad({ prefix: undefined }), "TypeError", either);
    },
  );

  Deno.test(
    name("a selector property set to undefined counts as absent"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      const selector = {
        prefix: undefined,
        start: ["a", "b"],
        end: ["a", "c"],
      };
      deepStrictEqual(
        await listKeys(t.kv, selector as unknown as Deno.KvListSelector),
        [["a", "b"]],
      );
      const withUndefinedEnd = { prefix: ["b"], end: undefined };
      deepStrictEqual(
        await listKeys(
          t.kv,
          withUndefinedEnd as unknown as Deno.KvListSelector,
        ),
        [["b", "a"]],
      );
    },
  );

  Deno.test(
    name("range errors reject on the first next(), not in list()"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const first = (s: Deno.KvListSelector, o?: Deno.KvListOptions) => () => kv.list(s, o).next();
      const start = "Start key is not in the keyspace defined by prefix";
      const end = "End key is not in the keyspace defined by prefix";
      await assertRejectsExact(
        first({ prefix: ["a"], start: ["a"] }),
        "TypeError",
        start,
      );
      await assertRejectsExact(
        first({ prefix: ["a"], start: ["b"] }),
        "TypeError",
        start,
      );
      await assertRejectsExact(
        first({ prefix: ["a", "b"], start: ["a"] }),
        "TypeError",
        start,
      );
      await assertRejectsExact(
        first({ prefix: ["a"], end: ["a"] }),
        "TypeError",
        end,
      );
      await assertRejectsExact(
        first({ prefix: ["a"], end: ["b"] }),
        "TypeError",
        end,
      );
      await assertRejectsExact(
        first({ start: ["b"], end: ["a"] }),
        "TypeError",
        "Start key is greater than end key",
      );
      await assertRejectsExact(
        first({ prefix: [null as unknown as string] }),
        "TypeError",
        BAD_PART,
      );
      await assertRejectsExact(
        first({ start: [{} as unknown as string], end: ["a"] }),
        "TypeError",
        BAD_PART,
      );
    },
  );

  Deno.test(
    name("limit must be a positive integer: list() throws a plain Error"),
    async () => {
      await using t = await target.open();
      for (
        const [limit, shown] of [
          [0, "0"],
          [-1, "-1"],
          [1.5, "1.5"],
          [NaN, "NaN"],
          ["5", "5"],
          [Infinity, "Infinity"],
        ]
      ) {
        assertThrowsExact(
          () => t.kv.list({ prefix: [] }, { limit: limit as number }),
          "Error",
          `Limit must be a positive integer: received ${shown}`,
        );
      }
    },
  );

  Deno.test(
    name("batchSize must be a positive integer: list() throws a plain Error"),
    async () => {
      await using t = await target.open();
      for (
        const [batchSize, shown] of [[0, "0"], [-1, "-1"], [2.5, "2.5"], [
          NaN,
          "NaN",
        ], ["5", "5"]]
      ) {
        assertThrowsExact(
          () => t.kv.list({ prefix: [] }, { batchSize: batchSize as number }),
          "Error",
          `batchSize must be a positive integer: received ${shown}`,
        );
      }
    },
  );

  Deno.test(
    name("an explicit batchSize above 1000 rejects on the first next()"),
    async () => {
      await using t = await target.open();
      await t.kv.set(["a"], 1);
      for (
        const options of [{ batchSize: 1001 }, { batchSize: 1001, limit: 1 }]
      ) {
        await assertRejectsExact(
          () => t.kv.list({ prefix: [] }, options).next(),
          "TypeError",
          "Too many entries (max 1000)",
        );
      }
      deepStrictEqual(
        await listKeys(t.kv, { prefix: [] }, { batchSize: 1000 }),
        [["a"]],
      );
    },
  );

  Deno.test(
    name("consistency must be strong or eventual, checked on the first next()"),
    async () => {
      await using t = await target.open();
      await t.kv.set(["a"], 1);
      for (const consistency of ["strong", "eventual"] as const) {
        deepStrictEqual(await listKeys(t.kv, { prefix: [] }, { consistency }), [
          ["a"],
        ]);
      }
      await assertRejectsExact(
        () =>
          t.kv.list({ prefix: [] }, { consistency: "bogus" as "strong" })
            .next(),
        "TypeError",
        "unknown variant `bogus`, expected `strong` or `eventual`",
      );
    },
  );

  Deno.test(
    name(
      "the cursor is padded base64url of the key after the selector's common prefix",
    ),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      const prefixA = await listWithCursors(t.kv, { prefix: ["a"] });
      deepStrictEqual(prefixA.steps.map((s) => s.cursor), [
        "AQD_AA==",
        "AmEA",
        "AmIA",
        "AmMA",
        "AmQA",
        "AmUAAngA",
        "AmV4AA==",
        "FQE=",
        "Ib_wAAAAAAAA",
        "Jw==",
      ]);
      const range = await listWithCursors(t.kv, {
        start: ["a", "b"],
        end: ["a", "z"],
      });
      deepStrictEqual(range.steps.map((s) => s.cursor), [
        "YgA=",
        "YwA=",
        "ZAA=",
        "ZQACeAA=",
        "ZXgA",
      ]);
      const all = await listWithCursors(t.kv, { prefix: [] }, { limit: 2 });
      deepStrictEqual(all.steps.map((s) => s.cursor), ["AmEA", "AmEAAQD_AA=="]);
      const nested = await listWithCursors(t.kv, { prefix: ["a", "e"] });
      deepStrictEqual(nested.steps.map((s) => s.cursor), ["AngA"]);
    },
  );

  Deno.test(
    name("the cursor after a key equal to the range's common prefix is empty"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      const listing = await listWithCursors(t.kv, {
        start: ["a"],
        end: ["a", "d"],
      });
      deepStrictEqual(listing.steps.map((s) => s.cursor), [
        "",
        "AQD_AA==",
        "AmEA",
        "AmIA",
        "AmMA",
      ]);
    },
  );

  Deno.test(
    name("a batched listing continues past a key equal to the range's common prefix"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      const range = { start: ["a"], end: ["a", "d"] };
      const expected = under(SAMPLE, 0, 5);
      for (const batchSize of [1, 2]) {
        deepStrictEqual(await listKeys(t.kv, range, { batchSize }), expected);
        deepStrictEqual(
          await listKeys(t.kv, range, { batchSize, reverse: true }),
          [...expected].reverse(),
        );
        deepStrictEqual(
          await listKeys(t.kv, { start: ["a"], end: ["b"] }, { batchSize }),
          under(SAMPLE, 0, 11),
        );
      }
    },
  );

  Deno.test(
    name("list() reports the first of several errors in Deno KV's order"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const bogus = "bogus" as Deno.KvConsistencyLevel;
      const variant = "unknown variant `bogus`, expected `strong` or `eventual`";
      const cases: [Deno.KvListSelector, Deno.KvListOptions, string][] = [
        [{ prefix: [null as unknown as string] }, { consistency: bogus }, BAD_PART],
        [{ prefix: [] }, { batchSize: 1001, consistency: bogus }, variant],
        [{ start: ["b"], end: ["a"] }, { consistency: bogus }, variant],
        [{ prefix: [] }, { cursor: "!!!", consistency: bogus }, variant],
        [{ start: ["b"], end: ["a"] }, { cursor: "!!!" }, "Start key is greater than end key"],
        [{ prefix: [] }, { batchSize: 1001, cursor: "!!!" }, "invalid cursor"],
        [
          { prefix: ["x".repeat(3000)] },
          { batchSize: 1001 },
          "Key too large for read (max 2049 bytes)",
        ],
      ];
      for (const [selector, options, message] of cases) {
        await assertRejectsExact(
          () => kv.list(selector, options).next(),
          "TypeError",
          message,
        );
      }
    },
  );

  Deno.test(
    name(
      "the cursor is empty after a natural end and the last key after the limit",
    ),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      equal((await listWithCursors(t.kv, { prefix: ["a"] })).cursor, "");
      equal(
        (await listWithCursors(t.kv, { prefix: ["a"] }, { limit: 100 })).cursor,
        "",
      );
      equal((await listWithCursors(t.kv, { prefix: ["zzz"] })).cursor, "");
      equal(
        (await listWithCursors(t.kv, { prefix: ["zzz"] }, { limit: 3 })).cursor,
        "",
      );
      equal(
        (await listWithCursors(t.kv, { prefix: ["a"] }, { limit: 2 })).cursor,
        "AmEA",
      );
      // The limit is reached on the very last key: the cursor still points at it.
      equal(
        (await listWithCursors(t.kv, { prefix: ["a"] }, { limit: 10 })).cursor,
        "Jw==",
      );
      equal(
        (await listWithCursors(t.kv, { prefix: ["a"] }, {
          limit: 2,
          reverse: true,
        })).cursor,
        "Ib_wAAAAAAAA",
      );
      const iter = t.kv.list({ prefix: ["a"] });
      for await (const entry of iter) {
        if (entry.key[1] === "b") break;
      }
      equal(
        iter.cursor,
        "AmIA",
        "after break the cursor is the last yielded key",
      );
    },
  );

  Deno.test(
    name(
      "reading the cursor before the first next() throws unless one was given",
    ),
    async () => {
      await using t = await target.open();
      assertThrowsExact(
        () => t.kv.list({ prefix: [] }).cursor,
        "Error",
        "Cannot get cursor before first iteration",
      );
      equal(t.kv.list({ prefix: [] }, { cursor: "AmEA" }).cursor, "AmEA");
    },
  );

  Deno.test(
    name("next() keeps returning done after the end"),
    async () => {
      await using t = await target.open();
      await t.kv.set(["a"], 1);
      const iter = t.kv.list({ prefix: [] });
      ok(iter[Symbol.asyncIterator]() === iter);
      equal((await iter.next()).done, false);
      for (let i = 0; i < 3; i++) {
        deepStrictEqual(await iter.next(), { done: true, value: undefined });
      }
      equal(iter.cursor, "");
    },
  );

  Deno.test(
    name(
      "resuming from a cursor continues strictly after it, forwards and in reverse",
    ),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      for (const [label, selector, expected] of SELECTORS) {
        for (const reverse of [false, true]) {
          const pages: Deno.KvKey[] = [];
          let cursor: string | undefined;
          for (let page = 0; page < 10; page++) {
            const iter = t.kv.list(selector, {
              limit: 3,
              reverse,
              ...(cursor === undefined ? {} : { cursor }),
            });
            const keys = (await collect(iter)).map((e) => e.key);
            pages.push(...keys);
            cursor = iter.cursor;
            if (keys.length < 3) break;
          }
          deepStrictEqual(
            pages,
            reverse ? [...expected].reverse() : expected,
            label,
          );
        }
      }
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }, { cursor: "AmIA" }),
        under(SAMPLE, 4, 11),
      );
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }, {
          cursor: "AmIA",
          reverse: true,
        }),
        [["a", "a"], ["a", new Uint8Array([0])]],
      );
      deepStrictEqual(
        await listKeys(t.kv, { start: ["a", "b"], end: ["a", "z"] }, {
          cursor: "YgA=",
        }),
        [["a", "c"], ["a", "d"], ["a", "e", "x"], ["a", "ex"]],
      );
    },
  );

  Deno.test(
    name(
      "a cursor is just a key position: no state, any direction, any prefix",
    ),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      // A reverse cursor used forwards continues after that position.
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }, { cursor: "AmUAAngA" }),
        under(SAMPLE, 7, 11),
      );
      // The cursor's key may be gone and new keys may follow it.
      await t.kv.delete(["a", "b"]);
      await t.kv.set(["a", "bb"], 1);
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }, { cursor: "AmIA", limit: 2 }),
        [
          ["a", "bb"],
          ["a", "c"],
        ],
      );
      // A cursor from another prefix is read relative to the new one: "c" in ["b"].
      await t.kv.set(["b", "d"], 1);
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["b"] }, { cursor: "AmMA" }),
        [["b", "d"]],
      );
      // "" means no cursor.
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }, { cursor: "", limit: 1 }),
        [["a", new Uint8Array([0])]],
      );
    },
  );

  Deno.test(
    name("a malformed cursor rejects with invalid cursor on the first next()"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, SAMPLE);
      const range = { start: ["a", "b"], end: ["a", "z"] };
      for (
        const [selector, cursor] of [
          [{ prefix: ["a"] }, "AQD/AA=="], // standard alphabet
          [range, "YgA"], // padding missing
          [{ prefix: ["a"] }, "!!!"],
        ] as const
      ) {
        await assertRejectsExact(
          () => t.kv.list(selector, { cursor }).next(),
          "TypeError",
          "invalid cursor",
        );
      }
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }, {
          cursor: "AQD_AA==",
          limit: 1,
        }),
        [["a", "a"]],
      );
      deepStrictEqual(
        await listKeys(t.kv, range, { cursor: "YgA=", limit: 1 }),
        [["a", "c"]],
      );
    },
  );

  Deno.test(
    name(
      "a cursor before a forward range or after a reverse range is out of bounds",
    ),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, [["a", "b"], ["a", "c"], ["a", "d"], ["a", "e"]]);
      const range = { start: ["a", "c"], end: ["a", "e"] };
      const oob = "cursor out of bounds";
      const list = (cursor: string, reverse: boolean) => listKeys(t.kv, range, { cursor, reverse });
      await assertRejectsExact(() => list(b64("b\0"), false), "TypeError", oob);
      await assertRejectsExact(() => list(b64("f\0"), true), "TypeError", oob);
      deepStrictEqual(await list(b64("c\0"), false), [["a", "d"]]);
      deepStrictEqual(await list(b64("e\0"), false), []);
      deepStrictEqual(await list(b64("f\0"), false), []);
      deepStrictEqual(await list(b64("b\0"), true), []);
      deepStrictEqual(await list(b64("c\0"), true), []);
      deepStrictEqual(await list(b64("d\0"), true), [["a", "c"]]);
      deepStrictEqual(await list(b64("e\0"), true), [["a", "d"], ["a", "c"]]);
      // Within a prefix selector a cursor sorts relative to the prefix's children.
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }, { cursor: b64("\xff") }),
        [],
      );
      deepStrictEqual(
        await listKeys(t.kv, { prefix: ["a"] }, { cursor: b64("\0") }),
        [
          ["a", "b"],
          ["a", "c"],
          ["a", "d"],
          ["a", "e"],
        ],
      );
    },
  );

  Deno.test(
    name("each batch is a new read: keys written ahead of the position appear"),
    async () => {
      await using t = await target.open();
      await setAll(t.kv, [["k", 1], ["k", 3]]);
      const seen: Deno.KvKey[] = [];
      for await (
        const entry of t.kv.list({ prefix: ["k"] }, { batchSize: 1 })
      ) {
        seen.push(entry.key);
        if (seen.length > 10) break; // a runaway listing fails below
        if (seen.length === 1) {
          await t.kv.set(["k", 2], "new");
          await t.kv.set(["k", 0], "behind");
        }
      }
      deepStrictEqual(seen, [["k", 1], ["k", 2], ["k", 3]]);
    },
  );
}
