/**
 * Two separate Deno processes, each with its own connection pool (two
 * "hosts"), share sessions on one PostgreSQL server: check-and-set counters
 * lose no increment, and a lease is exclusive across them. Ignored when
 * `SESSIONKV_PG_URL` is unset.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { Child } from "./fixtures/cleanup_util.ts";
import { noServer, PG_URL, pgStore, withSchema } from "./fixtures/postgres_util.ts";

const PROCESSES = 2;

/** Starts the fixtures, waits until all are ready, starts them together, returns their last lines. */
async function runTogether(script: string, args: string[]): Promise<unknown[]> {
  const children = Array.from({ length: PROCESSES }, () => Child.fixture(script, args));
  try {
    await Promise.all(children.map((c) => c.waitFor("ready", 60_000)));
  } catch (error) {
    await Promise.all(children.map((c) => c.kill()));
    throw error;
  }
  // Closing stdin is the start signal; release() then waits for the exit.
  const statuses = await Promise.all(children.map((c) => c.release()));
  statuses.forEach((s, i) => equal(s.code, 0, `child ${i}: ${children[i]!.lines}`));
  return children.map((c) => JSON.parse(c.lines.at(-1)!));
}

Deno.test({
  name:
    "[postgres] two processes with their own pools increment one counter with check() and lose nothing",
  ignore: noServer,
  async fn() {
    await withSchema(async (schema) => {
      const n = 150;
      const results = await runTogether("./postgres_counter.ts", [PG_URL!, schema, String(n)]);
      await using store = pgStore(schema);
      using kv = await store.openKv("bot", "counter");
      equal((await kv.get(["counter"])).value, PROCESSES * n);
      const retries = results.reduce<number>(
        (sum, r) => sum + (r as { retries: number }).retries,
        0,
      );
      console.log(`${PROCESSES} x ${n} increments, ${retries} check failures retried`);
    });
  },
});

Deno.test({
  name: "[postgres] a lease is exclusive across two processes with their own pools",
  ignore: noServer,
  async fn() {
    await withSchema(async (schema) => {
      const m = 40;
      const results = await runTogether("./postgres_lease_worker.ts", [PG_URL!, schema, String(m)]);
      deepEqual(results, Array.from({ length: PROCESSES }, () => ({ overlaps: 0 })));
      await using store = pgStore(schema);
      using kv = await store.openKv("bot", "turns");
      const turns: [number, number, unknown][] = [];
      for await (const e of kv.list<[number, number]>({ prefix: ["turns"] })) {
        turns.push([...e.value, e.key[1]]);
      }
      equal(turns.length, PROCESSES * m);
      equal(new Set(turns.map((t) => t[2])).size, PROCESSES);
      turns.sort((a, b) => a[0] - b[0]);
      let handovers = 0;
      for (let i = 1; i < turns.length; i++) {
        ok(turns[i]![0] >= turns[i - 1]![1], `turn ${i} started before the previous one ended`);
        if (turns[i]![2] !== turns[i - 1]![2]) handovers++;
      }
      console.log(`${turns.length} turns, ${handovers} handovers between the processes`);
      ok(handovers >= 5, "the processes took turns, so exclusivity was put to the test");
    });
  },
});
