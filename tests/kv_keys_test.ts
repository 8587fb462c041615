/**
 * Keys: part types, Deno KV's total order, invalid parts, the empty key, key
 * size limits and `commitVersionstamp()` (spec §2.11, §6, §7). Runs against
 * real Deno KV and every SessionKv target.
 */
import { deepStrictEqual, equal, notEqual, ok } from "node:assert/strict";
import { Buffer } from "node:buffer";
import { kvTargets } from "./_kv_targets.ts";
import {
  assertRejectsExact,
  BAD_PART,
  collect,
  listKeys,
  MAX_BIGINT_PART,
  orderedParts,
  READ_TOO_LARGE,
  setAll,
  shuffled,
  stampOf,
  WRITE_TOO_LARGE,
} from "./_kv_helpers.ts";

const x = (n: number) => "x".repeat(n);

for (const target of kvTargets) {
  const name = (what: string) => `[${target.id}] ${what}`;

  Deno.test(
    name(
      "every ArrayBufferView key part is stored as its bytes and read back as Uint8Array",
    ),
    async () => {
      await using t = await target.open();
      const cases: [ArrayBufferView, number[]][] = [
        [new Int8Array([-1, 2]), [255, 2]],
        [new Uint16Array([1, 258]), [1, 0, 2, 1]],
        [new Uint8ClampedArray([3]), [3]],
        [new DataView(new Uint8Array([4, 5]).buffer), [4, 5]],
        [new Float64Array([1]), [0, 0, 0, 0, 0, 0, 240, 63]],
        [new BigInt64Array([1n]), [1, 0, 0, 0, 0, 0, 0, 0]],
        [new Uint8Array([1, 2, 3, 4]).subarray(1, 3), [2, 3]],
        [Buffer.from([6, 7]), [6, 7]],
      ];
      for (const [i, [view, bytes]] of cases.entries()) {
        await t.kv.set(["abv", view as Uint8Array], i);
        const viaView = await t.kv.get(["abv", view as Uint8Array]);
        const viaBytes = await t.kv.get(["abv", new Uint8Array(bytes)]);
        equal(viaView.value, i, view.constructor.name);
        equal(viaBytes.value, i, view.constructor.name);
        deepStrictEqual(viaView.key, ["abv", new Uint8Array(bytes)]);
        equal(Object.getPrototypeOf(viaView.key[1]), Uint8Array.prototype);
      }
      const listed = await listKeys(t.kv, { prefix: ["abv"] });
      ok(
        listed.every((k) => Object.getPrototypeOf(k[1]) === Uint8Array.prototype),
      );
      equal(listed.length, cases.length);
    },
  );

  Deno.test(
    name("list() returns single-part keys in Deno KV order across types"),
    async () => {
      await using t = await target.open();
      const expected = orderedParts().map((p) => [p]);
      await setAll(t.kv, shuffled(expected, 7));
      deepStrictEqual(await listKeys(t.kv, { prefix: [] }), expected);
      deepStrictEqual(
        await listKeys(t.kv, { prefix: [] }, { reverse: true }),
        [...expected].reverse(),
      );
    },
  );

  Deno.test(
    name("a key sorts after its prefix and children follow the type order"),
    async () => {
      await using t = await target.open();
      const expected: Deno.KvKey[] = [
        ["a"],
        ["a", new Uint8Array([0])],
        ["a", ""],
        ["a", "a"],
        ["a", "a", "a"],
        ["a", "b"],
        ["a", -1n],
        ["a", 1n],
        ["a", -1],
        ["a", 1],
        ["a", false],
        ["a", true],
        ["a", true, 0],
        ["a\0"],
        ["aa"],
        ["b"],
      ];
      await setAll(t.kv, shuffled(expected, 3));
      deepStrictEqual(await listKeys(t.kv, { prefix: [] }), expected);
    },
  );

  Deno.test(
    name("strings sort by UTF-8 bytes, not by UTF-16 code units"),
    async () => {
      await using t = await target.open();
      const keys = [["😀"], ["\uFFFF"], ["é"], ["z"], ["\u{10FFFF}"]];
      await setAll(t.kv, keys);
      const expected = [["z"], ["é"], ["\uFFFF"], ["😀"], ["\u{10FFFF}"]];
      deepStrictEqual(await listKeys(t.kv, { prefix: [] }), expected);
      // JavaScript's own order differs, so this is not an accident of sort().
      notEqual(["\uFFFF", "😀"].sort()[0], "\uFFFF");
    },
  );

  Deno.test(
    name("0 and -0 are different keys and -0 survives the round trip"),
    async () => {
      await using t = await target.open();
      await t.kv.set([0], "zero");
      await t.kv.set([-0], "minus zero");
      equal((await t.kv.get([0])).value, "zero");
      const neg = await t.kv.get([-0]);
      equal(neg.value, "minus zero");
      ok(Object.is(neg.key[0], -0));
      const listed = await listKeys(t.kv, { prefix: [] });
      equal(listed.length, 2);
      ok(Object.is(listed[0]![0], -0));
      ok(Object.is(listed[1]![0], 0));
    },
  );

  Deno.test(name("1 and 1n are different keys"), async () => {
    await using t = await target.open();
    await t.kv.set([1], "number");
    await t.kv.set([1n], "bigint");
    equal((await t.kv.get([1])).value, "number");
    equal((await t.kv.get([1n])).value, "bigint");
    deepStrictEqual(await listKeys(t.kv, { prefix: [] }), [[1n], [1]]);
  });

  Deno.test(name("every NaN is one key, whatever its payload"), async () => {
    await using t = await target.open();
    const payloadNan = new Float64Array(
      new Uint8Array([1, 0, 0, 0, 0, 0, 0xf8, 0x7f]).buffer,
    )[0]!;
    await t.kv.set(["n", NaN], "plain");
    await t.kv.set(["n", payloadNan], "payload");
    await t.kv.set(["n", Infinity], "Infinity");
    equal((await t.kv.get(["n", NaN])).value, "payload");
    const entries = await collect(t.kv.list({ prefix: ["n"] }));
    deepStrictEqual(entries.map((e) => e.value), ["Infinity", "payload"]);
    ok(Number.isNaN(entries[1]!.key[1]));
  });

  Deno.test(
    name("a lone surrogate is stored as U+FFFD"),
    async () => {
      await using t = await target.open();
      await t.kv.set(["s", "\uD800"], 1);
      const entry = await t.kv.get(["s", "\uFFFD"]);
      equal(entry.value, 1);
      deepStrictEqual(entry.key, ["s", "\uFFFD"]);
      deepStrictEqual((await t.kv.get(["s", "\uD800"])).key, ["s", "\uFFFD"]);
      deepStrictEqual(await listKeys(t.kv, { prefix: ["s"] }), [[
        "s",
        "\uFFFD",
      ]]);
    },
  );

  Deno.test(
    name("bigint key parts order by value across byte lengths and signs"),
    async () => {
      await using t = await target.open();
      const parts = [
        -MAX_BIGINT_PART,
        -(2n ** 72n),
        -(2n ** 64n),
        -(2n ** 64n) + 1n,
        -(2n ** 56n),
        -257n,
        -256n,
        -255n,
        -1n,
        0n,
        1n,
        255n,
        256n,
        2n ** 56n,
        2n ** 64n - 1n,
        2n ** 64n,
        2n ** 72n,
        MAX_BIGINT_PART,
      ];
      const expected = parts.map((p) => ["n", p]);
      await setAll(t.kv, shuffled(expected, 11));
      deepStrictEqual(await listKeys(t.kv, { prefix: ["n"] }), expected);
      const big = await t.kv.get(["n", MAX_BIGINT_PART]);
      equal(big.key[1], MAX_BIGINT_PART);
      notEqual(big.versionstamp, null);
    },
  );

  Deno.test(
    name("a bigint key part of more than 255 bytes is rejected"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      for (const huge of [2n ** 2040n, -(2n ** 2040n)]) {
        const write = "Invalid mutation: BigUint requires more than 255 bytes to be represented";
        const read = "BigUint requires more than 255 bytes to be represented";
        await assertRejectsExact(() => kv.set([huge], 1), "TypeError", write);
        await assertRejectsExact(() => kv.delete([huge]), "TypeError", write);
        await assertRejectsExact(
          () => kv.atomic().sum(["a", huge], 1n).commit(),
          "TypeError",
          write,
        );
        await assertRejectsExact(() => kv.get([huge]), "TypeError", read);
        await assertRejectsExact(() => kv.getMany([[huge]]), "TypeError", read);
        await assertRejectsExact(
          () => kv.list({ prefix: [huge] }).next(),
          "TypeError",
          read,
        );
        // Checks are decoded with their versionstamp: a bad key is "Invalid check".
        await assertRejectsExact(
          () => kv.atomic().check({ key: [huge], versionstamp: null }).commit(),
          "TypeError",
          "Invalid check",
        );
      }
      deepStrictEqual(await listKeys(kv, { prefix: [] }), []);
    },
  );

  Deno.test(
    name("invalid key parts are rejected asynchronously with one TypeError"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const bad: unknown[] = [
        null,
        undefined,
        {},
        [],
        ["a"],
        new Date(0),
        new ArrayBuffer(1),
        Symbol("s"),
        () => 1,
        new Number(1),
        new String("a"),
        new Boolean(true),
        Object(1n),
      ];
      for (const part of bad) {
        const key = ["ok", part] as unknown as Deno.KvKey;
        await assertRejectsExact(() => kv.get(key), "TypeError", BAD_PART);
        await assertRejectsExact(
          () => kv.getMany([["a"], key]),
          "TypeError",
          BAD_PART,
        );
        await assertRejectsExact(() => kv.set(key, 1), "TypeError", BAD_PART);
        await assertRejectsExact(() => kv.delete(key), "TypeError", BAD_PART);
        await assertRejectsExact(
          () => kv.list({ prefix: key }).next(),
          "TypeError",
          BAD_PART,
        );
        await assertRejectsExact(
          () => kv.list({ start: ["a"], end: key }).next(),
          "TypeError",
          BAD_PART,
        );
        await assertRejectsExact(
          () => kv.atomic().check({ key, versionstamp: null }).commit(),
          "TypeError",
          BAD_PART,
        );
        await assertRejectsExact(
          () => kv.atomic().set(key, 1).commit(),
          "TypeError",
          BAD_PART,
        );
      }
      // A sparse hole is an invalid part too.
      // deno-lint-ignore no-sparse-arrays
      const holey = ["a", , "b"] as unknown as Deno.KvKey;
      await assertRejectsExact(() => kv.set(holey, 1), "TypeError", BAD_PART);
      await assertRejectsExact(() => kv.get(holey), "TypeError", BAD_PART);
      deepStrictEqual(await listKeys(kv, { prefix: [] }), []);
    },
  );

  Deno.test(name("a key that is not an array is rejected"), async () => {
    await using t = await target.open();
    const kv = t.kv;
    const str = "serde_v8 error: invalid type; expected: array, got: string";
    const obj = "serde_v8 error: invalid type; expected: array, got: unknown";
    const s = "a" as unknown as Deno.KvKey;
    await assertRejectsExact(() => kv.get(s), "TypeError", str);
    await assertRejectsExact(
      () => kv.get({} as unknown as Deno.KvKey),
      "TypeError",
      obj,
    );
    await assertRejectsExact(() => kv.set(s, 1), "TypeError", str);
    await assertRejectsExact(() => kv.delete(s), "TypeError", str);
    await assertRejectsExact(() => kv.getMany([s]), "TypeError", str);
    await assertRejectsExact(
      () => kv.getMany("a" as unknown as Deno.KvKey[]),
      "TypeError",
      str,
    );
  });

  Deno.test(
    name("the empty key can be read and listed from but not written"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      await kv.set(["a"], 1);
      const empty: Deno.KvKey = [];
      const got = await kv.get(empty);
      deepStrictEqual(got, { key: [], value: null, versionstamp: null });
      ok(got.key === empty, "a missing entry returns the caller's key");
      deepStrictEqual(await kv.getMany([[]]), [{
        key: [],
        value: null,
        versionstamp: null,
      }]);
      const cannot = "key cannot be empty";
      await assertRejectsExact(() => kv.set([], 1), "TypeError", cannot);
      await assertRejectsExact(() => kv.delete([]), "TypeError", cannot);
      await assertRejectsExact(
        () => kv.atomic().check({ key: [], versionstamp: null }).commit(),
        "TypeError",
        cannot,
      );
      await assertRejectsExact(
        () => kv.atomic().sum([], 1n).commit(),
        "TypeError",
        cannot,
      );
      await assertRejectsExact(
        () => kv.atomic().min([], 1n).commit(),
        "TypeError",
        cannot,
      );
      await assertRejectsExact(
        () => kv.atomic().max([], 1n).commit(),
        "TypeError",
        cannot,
      );
      await assertRejectsExact(
        () => kv.atomic().delete([]).commit(),
        "TypeError",
        cannot,
      );
      deepStrictEqual(await listKeys(kv, { prefix: [] }), [["a"]]);
      deepStrictEqual(await listKeys(kv, { start: [], end: ["b"] }), [["a"]]);
    },
  );

  Deno.test(
    name("write keys may encode to at most 2048 bytes"),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const fits: Deno.KvKey[] = [
        [new Uint8Array(2046).fill(1)], // 1 + 2046 + 1
        [new Uint8Array(1023)], // every 0x00 is escaped to two bytes
        [x(2046)],
        [x(1022), x(1022)],
      ];
      const tooLarge: Deno.KvKey[] = [
        [new Uint8Array(2047).fill(1)],
        [new Uint8Array(1024)],
        [x(2047)],
        [x(1023), x(1022)],
        ["é".repeat(1023) + "a"], // 1 + 2047 + 1: UTF-8 bytes count, not chars
      ];
      for (const key of fits) {
        const stamp = stampOf(await kv.set(key, 1));
        equal((await kv.get(key)).versionstamp, stamp);
        stampOf(
          await kv.atomic().check({ key, versionstamp: stamp }).delete(key)
            .commit(),
        );
        equal((await kv.get(key)).versionstamp, null);
      }
      for (const key of tooLarge) {
        await assertRejectsExact(
          () => kv.set(key, 1),
          "TypeError",
          WRITE_TOO_LARGE,
        );
        await assertRejectsExact(
          () => kv.delete(key),
          "TypeError",
          WRITE_TOO_LARGE,
        );
        await assertRejectsExact(
          () => kv.atomic().check({ key, versionstamp: null }).commit(),
          "TypeError",
          WRITE_TOO_LARGE,
        );
        await assertRejectsExact(
          () => kv.atomic().sum(key, 1n).commit(),
          "TypeError",
          WRITE_TOO_LARGE,
        );
      }
      deepStrictEqual(await listKeys(kv, { prefix: [] }), []);
    },
  );

  Deno.test(
    name(
      "get, getMany and list prefixes allow encoded keys of 2048 bytes, range bounds 2049",
    ),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      // get reads [enc(key), enc(key)+0x00): the bound is one byte longer.
      equal((await kv.get([x(2046)])).versionstamp, null);
      equal((await kv.get([new Uint8Array(1023)])).versionstamp, null);
      await assertRejectsExact(
        () => kv.get([x(2047)]),
        "TypeError",
        READ_TOO_LARGE,
      );
      await assertRejectsExact(
        () => kv.get([new Uint8Array(1024)]),
        "TypeError",
        READ_TOO_LARGE,
      );
      equal((await kv.getMany([[x(2046)]]))[0]!.versionstamp, null);
      await assertRejectsExact(
        () => kv.getMany([["a"], [x(2047)]]),
        "TypeError",
        READ_TOO_LARGE,
      );
      // A prefix P reads [enc(P)+0x00, enc(P)+0xFF).
      deepStrictEqual(await listKeys(kv, { prefix: [x(2046)] }), []);
      await assertRejectsExact(
        () => kv.list({ prefix: [x(2047)] }).next(),
        "TypeError",
        READ_TOO_LARGE,
      );
      // start and end are bounds themselves: 2049 bytes pass, 2050 fail.
      deepStrictEqual(await listKeys(kv, { start: [x(2047)], end: ["y"] }), []);
      deepStrictEqual(await listKeys(kv, { start: ["a"], end: [x(2047)] }), []);
      await assertRejectsExact(
        () => kv.list({ start: [x(2048)], end: ["y"] }).next(),
        "TypeError",
        READ_TOO_LARGE,
      );
      await assertRejectsExact(
        () => kv.list({ start: ["a"], end: [x(2048)] }).next(),
        "TypeError",
        READ_TOO_LARGE,
      );
      // ["x", s] encodes to 3 + len + 2 bytes.
      deepStrictEqual(
        await listKeys(kv, { prefix: ["x"], start: ["x", x(2044)] }),
        [],
      );
      deepStrictEqual(
        await listKeys(kv, { prefix: ["x"], end: ["x", x(2044)] }),
        [],
      );
      await assertRejectsExact(
        () => kv.list({ prefix: ["x"], start: ["x", x(2045)] }).next(),
        "TypeError",
        READ_TOO_LARGE,
      );
      await assertRejectsExact(
        () => kv.list({ prefix: ["x"], end: ["x", x(2045)] }).next(),
        "TypeError",
        READ_TOO_LARGE,
      );
    },
  );

  Deno.test(
    name("commitVersionstamp() returns one shared symbol"),
    async () => {
      await using t = await target.open();
      const sym = t.kv.commitVersionstamp();
      equal(typeof sym, "symbol");
      equal(sym, t.kv.commitVersionstamp());
      equal(String(sym), "Symbol(KvCommitVersionstamp)");
    },
  );

  Deno.test(
    name(
      "a set whose last key part is commitVersionstamp() is keyed by the commit's versionstamp",
    ),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const sym = kv.commitVersionstamp() as unknown as Deno.KvKeyPart;
      const first = stampOf(await kv.set(["cv", sym], "x"));
      const entry = await kv.get(["cv", first]);
      deepStrictEqual(entry, {
        key: ["cv", first],
        value: "x",
        versionstamp: first,
      });

      const second = stampOf(
        await kv.atomic()
          .set(["t", sym], 1)
          .set(["t", sym], 2)
          .mutate({ type: "set", key: ["u", sym], value: 3 })
          .commit(),
      );
      const all = await collect(kv.list({ prefix: [] }));
      deepStrictEqual(all, [
        { key: ["cv", first], value: "x", versionstamp: first },
        { key: ["t", second], value: 2, versionstamp: second },
        { key: ["u", second], value: 3, versionstamp: second },
      ]);
    },
  );

  Deno.test(
    name(
      "commitVersionstamp() is rejected anywhere but as the last part of a set",
    ),
    async () => {
      await using t = await target.open();
      const kv = t.kv;
      const sym = kv.commitVersionstamp() as unknown as Deno.KvKeyPart;
      await assertRejectsExact(
        () => kv.set([sym, "a"], 1),
        "TypeError",
        BAD_PART,
      );
      await assertRejectsExact(() => kv.get(["a", sym]), "TypeError", BAD_PART);
      await assertRejectsExact(
        () => kv.getMany([["a", sym]]),
        "TypeError",
        BAD_PART,
      );
      await assertRejectsExact(
        () => kv.delete(["a", sym]),
        "TypeError",
        BAD_PART,
      );
      await assertRejectsExact(
        () => kv.atomic().delete(["a", sym]).commit(),
        "TypeError",
        BAD_PART,
      );
      await assertRejectsExact(
        () => kv.atomic().sum(["a", sym], 1n).commit(),
        "TypeError",
        BAD_PART,
      );
      await assertRejectsExact(
        () => kv.atomic().check({ key: ["a", sym], versionstamp: null }).commit(),
        "TypeError",
        BAD_PART,
      );
      await assertRejectsExact(
        () => kv.list({ prefix: ["a", sym] }).next(),
        "TypeError",
        BAD_PART,
      );
      // The symbol is removed first, so a lone symbol is an empty key.
      await assertRejectsExact(
        () => kv.set([sym], 1),
        "TypeError",
        "key cannot be empty",
      );
      deepStrictEqual(await listKeys(kv, { prefix: [] }), []);
    },
  );
}
