/**
 * scheduleCleanup(), cleanupCronHandler() and cleanupSettingsFromEnv(): the
 * timer fallback (tested in-process, with Deno's timer and op sanitizers),
 * and the Deno.cron path (in a child process started with --unstable-cron).
 */
import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import {
  cleanupCronHandler,
  type CleanupReport,
  cleanupSettingsFromEnv,
  scheduleCleanup,
  SessionStore,
  SessionStoreClosedError,
} from "../mod.ts";
import { withTempDir } from "./_helpers.ts";
import { ageAll, Child, DAY_MS, sleep } from "./fixtures/cleanup_util.ts";

const hasDenoCron = typeof (Deno as { cron?: unknown }).cron === "function";

/** Captures the records of the ["sessionkv", "cleanup"] logger while `fn` runs. */
async function withLogs<T>(fn: (records: LogRecord[]) => Promise<T>): Promise<T> {
  const records: LogRecord[] = [];
  await configure({
    sinks: { memory: (record) => records.push(record) },
    loggers: [
      { category: ["sessionkv", "cleanup"], sinks: ["memory"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
    reset: true,
  });
  try {
    return await fn(records);
  } finally {
    await reset();
  }
}

/** Resolves when `check()` holds, polling; rejects after `timeoutMs`. */
async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Replaces `store.cleanup` by one that waits for `release()` (or its signal). */
function slowCleanup(store: SessionStore) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => release = resolve);
  const signals: AbortSignal[] = [];
  store.cleanup = async (options = {}) => {
    signals.push(options.signal!);
    await new Promise<void>((resolve, reject) => {
      gate.then(resolve);
      options.signal?.addEventListener("abort", () => reject(options.signal!.reason));
    });
    return {
      scanned: 0,
      deleted: 0,
      skippedInUse: 0,
      bytesFreed: 0,
      cutoff: new Date(),
      dryRun: false,
      errors: [],
    };
  };
  return { release: () => release(), signals };
}

Deno.test("scheduleCleanup() falls back to a timer that runs the sweep on schedule", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    {
      using kv = await store.openKv("bot", "idle");
      await kv.set(["k"], 1);
    }
    await ageAll(root, 30 * DAY_MS);
    const reports: CleanupReport[] = [];
    using schedule = scheduleCleanup(store, {
      schedule: "* * * * * *", // every second
      olderThanDays: 7,
      mode: "timer",
      onReport: (report) => reports.push(report),
    });
    equal(schedule.mode, "timer");
    equal(schedule.schedule, "* * * * * *");
    const next = schedule.nextRun()!;
    ok(next.getTime() > Date.now() && next.getTime() <= Date.now() + 1000);
    await until(() => reports.length >= 2, 3500, "two runs");
    equal(reports[0]!.deleted, 1);
    equal(reports[1]!.deleted, 0);
    equal(schedule.runs >= 2, true);
    equal(schedule.skipped, 0);
  });
});

Deno.test("scheduleCleanup() picks the timer where Deno.cron is missing, and Deno.cron for five fields where it exists", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    using six = scheduleCleanup(store, { schedule: "0 * * * * *" });
    equal(six.mode, "timer", "six fields always use the timer");
    if (!hasDenoCron) {
      using auto = scheduleCleanup(store);
      equal(auto.mode, "timer");
      equal(auto.schedule, "0 * * * *");
      equal(auto.name, "sessionkv-cleanup");
      throws(() => scheduleCleanup(store, { mode: "deno-cron" }), TypeError);
    }
  });
});

Deno.test("scheduleCleanup() skips a run while the previous sweep still goes, and logs it", async () => {
  await withTempDir(async (root) => {
    await withLogs(async (records) => {
      await using store = new SessionStore({ root });
      const slow = slowCleanup(store);
      await using schedule = scheduleCleanup(store, { schedule: "* * * * * *", mode: "timer" });
      await until(() => schedule.skipped >= 1, 3500, "a skipped run");
      equal(schedule.runs, 1, "one sweep at a time");
      equal(schedule.running, true);
      await schedule.runNow(); // skipped too
      ok(schedule.skipped >= 2);
      const skips = records.filter((r) => r.level === "warning" && r.properties.skipped);
      ok(skips.length >= 2, "each skipped run is logged");
      equal(skips[0]!.properties.name, "sessionkv-cleanup");
      slow.release();
      await until(() => !schedule.running, 1000, "the sweep to end");
      const done = records.find((r) => r.level === "info");
      ok(done, "a completed run is logged at info level");
    });
  });
});

Deno.test("stop() ends the schedule, aborts a running sweep and leaves no timer behind", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const slow = slowCleanup(store);
    const schedule = scheduleCleanup(store, { schedule: "* * * * * *", mode: "timer" });
    const run = schedule.runNow();
    equal(schedule.running, true);
    equal(slow.signals[0]!.aborted, false);
    schedule.stop();
    schedule.stop(); // idempotent
    equal(schedule.stopped, true);
    equal(slow.signals[0]!.aborted, true, "the running sweep is aborted");
    await run; // resolves: an aborted sweep is not an error
    await schedule[Symbol.asyncDispose]();
    equal(schedule.running, false);
    equal(schedule.nextRun(), undefined);
    await schedule.runNow(); // a no-op
    equal(schedule.runs, 1);
    await sleep(1100); // a tick would have come by now
    equal(slow.signals.length, 1, "no run after stop()");
  });
});

Deno.test("stop() and store.close() leave no timer behind: the process ends by itself", async () => {
  await withTempDir(async (root) => {
    // Deno's test sanitizers do not report pending timers, so a child process
    // shows it: a timer left behind would keep it alive until killed.
    const { status, steps } = await runCron(root, "timer-stop", 10_000, []);
    equal(status.code, 0, "exited by itself");
    deepEqual(steps, [{ step: "stopped", a: true, b: true }]);
  });
});

Deno.test("store.close() stops the schedule and the handler", async () => {
  await withTempDir(async (root) => {
    const store = new SessionStore({ root });
    const schedule = scheduleCleanup(store, { schedule: "* * * * * *", mode: "timer" });
    const handler = cleanupCronHandler(store);
    {
      using _other = scheduleCleanup(store, { mode: "timer" }); // stopped before close
    }
    await store.close();
    equal(schedule.stopped, true);
    equal(handler.stopped, true);
    await handler(); // a no-op, not a SessionStoreClosedError
    await rejects(store.cleanup(), SessionStoreClosedError);
  });
});

Deno.test("scheduleCleanup() and cleanupCronHandler() validate their arguments", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    throws(() => scheduleCleanup(store, { schedule: "every hour" }), TypeError);
    throws(() => scheduleCleanup(store, { schedule: "61 * * * *" }), TypeError);
    throws(() => scheduleCleanup(store, { schedule: 5 as unknown as string }), TypeError);
    throws(() => scheduleCleanup(store, { olderThanDays: -1 }), RangeError);
    throws(() => scheduleCleanup(store, { olderThanDays: "7" as unknown as number }), TypeError);
    throws(() => scheduleCleanup(store, { name: "" }), TypeError);
    throws(() => scheduleCleanup(store, { name: "x".repeat(65) }), RangeError);
    throws(() => scheduleCleanup(store, { mode: "cron" as "timer" }), TypeError);
    throws(() => scheduleCleanup({} as SessionStore), TypeError);
    throws(() => cleanupCronHandler(store, { olderThanDays: Number.NaN }), TypeError);
    throws(() => cleanupCronHandler(null as unknown as SessionStore), TypeError);
  });
});

Deno.test("cleanupCronHandler() sweeps when called, skips overlapping calls and logs failures instead of throwing", async () => {
  await withTempDir(async (root) => {
    await withLogs(async (records) => {
      await using store = new SessionStore({ root });
      {
        using kv = await store.openKv("bot", "idle");
        await kv.set(["k"], 1);
      }
      await ageAll(root, 30 * DAY_MS);
      const deleted: number[] = [];
      using handler = cleanupCronHandler(store, { onReport: (r) => deleted.push(r.deleted) });
      await handler();
      deepEqual(deleted, [1]);

      const slow = slowCleanup(store);
      const first = handler();
      await handler(); // skipped: returns at once
      slow.release();
      await first;
      equal(deleted.length, 2);
      ok(records.some((r) => r.level === "warning" && r.properties.skipped === 1));

      store.cleanup = () => Promise.reject(new Error("disk on fire"));
      await handler(); // does not reject
      ok(records.some((r) => r.level === "error" && String(r.properties.error).includes("fire")));
      handler.stop();
      equal(handler.stopped, true);
    });
  });
});

Deno.test("cleanupSettingsFromEnv() reads and validates SESSIONKV_CLEANUP_*", () => {
  const from = (env: Record<string, string>) => cleanupSettingsFromEnv((name) => env[name]);
  deepEqual(from({}), {
    enabled: false,
    intervalHours: 1,
    olderThanDays: 7,
    schedule: "0 * * * *",
  });
  deepEqual(
    from({
      SESSIONKV_CLEANUP_ENABLED: "TRUE",
      SESSIONKV_CLEANUP_INTERVAL_HOURS: "0.25",
      SESSIONKV_CLEANUP_OLDER_THAN_DAYS: "1.5",
    }),
    { enabled: true, intervalHours: 0.25, olderThanDays: 1.5, schedule: "*/15 * * * *" },
  );
  const schedules: Record<string, string> = {
    "1": "0 * * * *",
    "6": "0 */6 * * *",
    "24": "0 0 * * *",
    "168": "0 0 * * 0",
    "0.5": "*/30 * * * *",
  };
  for (const [hours, schedule] of Object.entries(schedules)) {
    equal(from({ SESSIONKV_CLEANUP_INTERVAL_HOURS: hours }).schedule, schedule);
  }
  equal(from({ SESSIONKV_CLEANUP_ENABLED: "off" }).enabled, false);
  equal(from({ SESSIONKV_CLEANUP_ENABLED: " " }).enabled, false, "empty means unset");
  equal(from({ SESSIONKV_CLEANUP_OLDER_THAN_DAYS: "0" }).olderThanDays, 0);
  throws(() => from({ SESSIONKV_CLEANUP_ENABLED: "maybe" }), TypeError);
  throws(() => from({ SESSIONKV_CLEANUP_INTERVAL_HOURS: "hourly" }), TypeError);
  throws(() => from({ SESSIONKV_CLEANUP_INTERVAL_HOURS: "0" }), RangeError);
  throws(() => from({ SESSIONKV_CLEANUP_INTERVAL_HOURS: "-1" }), RangeError);
  throws(() => from({ SESSIONKV_CLEANUP_INTERVAL_HOURS: "5" }), RangeError);
  throws(() => from({ SESSIONKV_CLEANUP_INTERVAL_HOURS: "Infinity" }), TypeError);
  throws(() => from({ SESSIONKV_CLEANUP_OLDER_THAN_DAYS: "-2" }), RangeError);
  throws(() => from({ SESSIONKV_CLEANUP_OLDER_THAN_DAYS: "7d" }), TypeError);
  const error = (() => {
    try {
      from({ SESSIONKV_CLEANUP_INTERVAL_HOURS: "5" });
    } catch (e) {
      return e as Error;
    }
  })();
  ok(error?.message.includes('"5"'), "the message quotes the value");
});

Deno.test("cleanupSettingsFromEnv() reads the process environment by default", () => {
  const saved = Deno.env.get("SESSIONKV_CLEANUP_OLDER_THAN_DAYS");
  Deno.env.set("SESSIONKV_CLEANUP_OLDER_THAN_DAYS", "3");
  try {
    equal(cleanupSettingsFromEnv().olderThanDays, 3);
  } finally {
    if (saved === undefined) Deno.env.delete("SESSIONKV_CLEANUP_OLDER_THAN_DAYS");
    else Deno.env.set("SESSIONKV_CLEANUP_OLDER_THAN_DAYS", saved);
  }
});

async function runCron(
  root: string,
  which: string,
  timeoutMs: number,
  flags = ["--unstable-cron"],
) {
  const child = Child.fixture("./cleanup_cron.ts", [root, which], flags);
  const timer = setTimeout(() => child.kill(), timeoutMs);
  try {
    const status = await child.release();
    return { status, steps: child.lines.map((l) => JSON.parse(l)) };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("with --unstable-cron, scheduleCleanup() registers with Deno.cron and stop() unregisters it", async () => {
  await withTempDir(async (root) => {
    // Deno 2.9 (CLI) accepts Deno.cron calls after start-up and takes an
    // abort signal; the process exits by itself only if stop() removed the job.
    const { status, steps } = await runCron(root, "schedule", 20_000);
    equal(status.code, 0);
    deepEqual(steps, [
      { step: "scheduled", mode: "deno-cron", hasCron: true },
      { step: "duplicate", duplicate: "TypeError" },
      { step: "ran", runs: 1 },
      { step: "stopped", stopped: true },
    ]);
  });
});

Deno.test("with --unstable-cron, a top-level Deno.cron takes cleanupCronHandler(), a no-op once the store closed", async () => {
  await withTempDir(async (root) => {
    {
      await using store = new SessionStore({ root });
      using kv = await store.openKv("bot", "idle");
      await kv.set(["k"], 1);
    }
    await ageAll(root, 30 * DAY_MS);
    const { status, steps } = await runCron(root, "top-level", 20_000);
    equal(status.code, 0);
    deepEqual(steps, [
      { step: "handled", deleted: 1 },
      { step: "closed", stopped: true },
      { step: "no-op" },
    ]);
  });
});

Deno.test({
  name: "with --unstable-cron, Deno.cron fires the sweep at the next minute (SESSIONKV_SLOW=1)",
  ignore: Deno.env.get("SESSIONKV_SLOW") !== "1",
  fn: async () => {
    await withTempDir(async (root) => {
      {
        await using store = new SessionStore({ root });
        using kv = await store.openKv("bot", "idle");
        await kv.set(["k"], 1);
      }
      await ageAll(root, 30 * DAY_MS);
      const { status, steps } = await runCron(root, "fire", 75_000);
      equal(status.code, 0);
      deepEqual(steps, [
        { step: "scheduled", mode: "deno-cron" },
        { step: "fired", mode: "deno-cron", deleted: 1 },
      ]);
    });
  },
});
