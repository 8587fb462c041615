/**
 * The per-operation benches of `deno task bench:compare`, one session each:
 * SessionKv on both drivers and with exclusive locking, real Deno KV on a file, raw `node:sqlite`
 * prepared statements and one shared SQLite file. Each group's baseline is
 * Deno KV, so `deno bench` prints "N× faster than Deno KV" beside raw SQLite.
 * The subjects are those of `bench/_subjects.ts`; `bench/compare.ts` runs
 * them on many sessions too and writes `bench/RESULTS.md`.
 *
 *   deno bench --allow-all --unstable-kv bench/kv_bench.ts
 */
import { join } from "node:path";
import { loadFfiDriver } from "../mod.ts";
import {
  denoKvSubject,
  KEYS,
  type OpResult,
  rawSubject,
  SESSIONKV_VARIANTS,
  sessionKvSubject,
  type Subject,
  SUBJECT_NAMES,
} from "./_subjects.ts";

const dir = await Deno.makeTempDir({ prefix: "sessionkv-bench-" });
const subjects: Subject[] = [];
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

subjects.push(await denoKvSubject(join(dir, "denokv.sqlite3"), 1));
let ffiSkipped: string | undefined;
try {
  loadFfiDriver();
} catch (error) {
  ffiSkipped = (error as Error).message;
  console.warn(`ffi driver not benchmarked: ${ffiSkipped}`);
}
for (const variant of SESSIONKV_VARIANTS) {
  if (variant.driver === "ffi" && ffiSkipped !== undefined) continue;
  subjects.push(await sessionKvSubject(variant, join(dir, variant.id), 1));
}
for (const shared of [false, true]) {
  const path = join(dir, shared ? "shared" : "raw");
  await Deno.mkdir(path);
  subjects.push(rawSubject(path, 1, shared));
}

const groups = {
  "set": (s: Subject, i: number) => s.set(0, i),
  "get": (s: Subject, i: number) => s.get(0, i),
  "getMany(10)": (s: Subject, i: number) => s.getMany(0, i),
  [`list of ${KEYS}`]: (s: Subject) => s.list(0),
  "atomic check+set": (s: Subject, i: number) => s.atomic(0, i),
};

for (const [group, op] of Object.entries(groups)) {
  for (const subject of subjects) {
    let i = 0;
    // Synchronous subjects get a synchronous bench, so no await is timed.
    const first: OpResult = op(subject, i++);
    const name = SUBJECT_NAMES[subject.id];
    const baseline = subject.id === "denokv";
    if (first instanceof Promise) {
      await first;
      Deno.bench({ name, group, baseline }, async () => {
        await op(subject, i++);
      });
    } else {
      Deno.bench({ name, group, baseline }, () => {
        op(subject, i++);
      });
    }
  }
}
