/**
 * Periodic idle-session cleanup: `scheduleCleanup()` registers
 * `store.cleanup()` with `Deno.cron` when the runtime has it and with a timer
 * driven by a cron parser otherwise; `cleanupCronHandler()` gives the handler
 * to pass to `Deno.cron` yourself at module top level (Deno Deploy needs
 * that); `cleanupSettingsFromEnv()` reads the `SESSIONKV_CLEANUP_*` variables.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Cron } from "croner";
import type { CleanupReport, SessionStore } from "./store.ts";
import { envBoolean, type EnvLookup, envNumber, processEnv } from "./_env.ts";

const logger = getLogger(["sessionkv", "cleanup"]);

const DAY_MS = 86_400_000;
/** The longest delay `setTimeout` takes (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The default schedule of {@linkcode scheduleCleanup}: every hour, on the hour. */
export const DEFAULT_CLEANUP_SCHEDULE = "0 * * * *";
/** The default name of the cleanup job (the `Deno.cron` name, also in logs). */
export const DEFAULT_CLEANUP_NAME = "sessionkv-cleanup";

/** Options shared by {@linkcode scheduleCleanup} and {@linkcode cleanupCronHandler}. */
export interface CleanupJobOptions {
  /**
   * Delete sessions with no write for this many days (fractions allowed).
   * @default {7}
   */
  olderThanDays?: number;
  /**
   * The job's name: the `Deno.cron` name (at most 64 characters, unique in
   * the process) and the `name` property of its log records.
   * @default {"sessionkv-cleanup"}
   */
  name?: string;
  /** Called with the report of every run that completed. */
  onReport?: (report: CleanupReport) => void;
}

/** Options of {@linkcode scheduleCleanup}. */
export interface ScheduleCleanupOptions extends CleanupJobOptions {
  /**
   * When to run, as a cron expression in UTC (as `Deno.cron` reads it):
   * five fields `minute hour day-of-month month day-of-week`. Six fields
   * (seconds first: `"30 0 * * * *"` is every hour at 00:30) are accepted by
   * the timer only, so they select it even where `Deno.cron` exists.
   * @default {"0 * * * *"}
   */
  schedule?: string;
  /**
   * `"deno-cron"` registers with `Deno.cron` (needs `--unstable-cron` or
   * Deno Deploy), `"timer"` uses a timer in this process, `"auto"` picks
   * `Deno.cron` when the runtime has it and the schedule has five fields.
   * @default {"auto"}
   */
  mode?: "auto" | "deno-cron" | "timer";
}

/** A running cleanup schedule, from {@linkcode scheduleCleanup}. */
export interface CleanupSchedule extends Disposable, AsyncDisposable {
  /** The job's name. */
  readonly name: string;
  /** The cron expression. */
  readonly schedule: string;
  /** What drives it: `Deno.cron` or a timer in this process. */
  readonly mode: "deno-cron" | "timer";
  /** Whether `stop()` was called or the store closed. */
  readonly stopped: boolean;
  /** Whether a sweep is running now. */
  readonly running: boolean;
  /** Sweeps started so far. */
  readonly runs: number;
  /** Runs skipped because the previous sweep was still running. */
  readonly skipped: number;
  /**
   * When the next run is due (UTC schedule), or `undefined` once stopped.
   *
   * @returns The date of the next run.
   */
  nextRun(): Date | undefined;
  /**
   * Runs a sweep now, unless one is running (then it is skipped, as a
   * scheduled run would be) or the schedule is stopped.
   *
   * @returns When the sweep is over; it never rejects (failures are logged).
   */
  runNow(): Promise<void>;
  /**
   * Ends the schedule: no further run starts and a running sweep is aborted.
   * With `Deno.cron` the job is unregistered where the runtime allows it (the
   * Deno CLI does, through an abort signal); where it does not, the handler
   * becomes a no-op. Idempotent. `store.close()` calls it too.
   */
  stop(): void;
  /** Same as {@linkcode CleanupSchedule.stop}. */
  [Symbol.dispose](): void;
  /**
   * Stops the schedule and waits for a running sweep to finish aborting.
   *
   * @returns When no sweep of this schedule runs any more.
   */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The handler from {@linkcode cleanupCronHandler}: call it (or let
 * `Deno.cron` call it) to run one sweep.
 */
export interface CleanupCronHandler extends Disposable {
  /**
   * Runs one sweep. A call while the previous sweep still runs is skipped,
   * and after `stop()` (or `store.close()`) every call is a no-op. Never
   * rejects: failures are logged, so `Deno.cron` does not retry them.
   *
   * @returns When the sweep is over.
   */
  (): Promise<void>;
  /** Whether `stop()` was called or the store closed. */
  readonly stopped: boolean;
  /** Makes every later call a no-op and aborts a running sweep. Idempotent. */
  stop(): void;
  /** Same as `stop()`. */
  [Symbol.dispose](): void;
}

function validateJobOptions(options: CleanupJobOptions): { olderThanMs: number; name: string } {
  const olderThanDays = options.olderThanDays ?? 7;
  if (typeof olderThanDays !== "number" || Number.isNaN(olderThanDays)) {
    throw new TypeError(`olderThanDays must be a number: received ${String(olderThanDays)}`);
  }
  if (olderThanDays < 0 || !Number.isFinite(olderThanDays)) {
    throw new RangeError(
      `olderThanDays must be a finite number of zero or more: received ${olderThanDays}`,
    );
  }
  const name = options.name ?? DEFAULT_CLEANUP_NAME;
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError(`name must be a non-empty string: received ${String(name)}`);
  }
  if (name.length > 64) {
    throw new RangeError(`name must be at most 64 characters: received "${name}"`);
  }
  if (options.onReport !== undefined && typeof options.onReport !== "function") {
    throw new TypeError("onReport must be a function");
  }
  return { olderThanMs: olderThanDays * DAY_MS, name };
}

function validateStore(store: SessionStore): void {
  if (
    typeof store?.cleanup !== "function" || typeof (store as { onClose?: unknown }).onClose !==
      "function"
  ) {
    throw new TypeError("store must be a SessionStore");
  }
}

/** Runs sweeps one at a time and stops with the store. */
class Sweeper {
  readonly #store: SessionStore;
  readonly #olderThanMs: number;
  readonly #onReport: ((report: CleanupReport) => void) | undefined;
  readonly #abort = new AbortController();
  readonly #unhook: () => void;
  readonly #onStop: () => void;
  readonly name: string;
  #running: Promise<void> | undefined;
  runs = 0;
  skipped = 0;

  constructor(store: SessionStore, options: CleanupJobOptions, onStop: () => void = () => {}) {
    validateStore(store);
    const { olderThanMs, name } = validateJobOptions(options);
    this.#store = store;
    this.#olderThanMs = olderThanMs;
    this.#onReport = options.onReport;
    this.#onStop = onStop;
    this.name = name;
    this.#unhook = store.onClose(() => {
      if (this.stopped) return;
      logger.debug("Cleanup {name} stopped: the store closed", { name });
      this.stop();
    });
  }

  get stopped(): boolean {
    return this.#abort.signal.aborted;
  }

  get running(): boolean {
    return this.#running !== undefined;
  }

  /** Resolves when no sweep runs. */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  run(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.#running !== undefined) {
      this.skipped++;
      logger.warn("Cleanup {name} skipped: the previous run is still going", {
        name: this.name,
        skipped: this.skipped,
      });
      return Promise.resolve();
    }
    this.runs++;
    const running = this.#sweep().finally(() => {
      this.#running = undefined;
    });
    this.#running = running;
    return running;
  }

  async #sweep(): Promise<void> {
    const name = this.name;
    const started = performance.now();
    logger.debug("Cleanup {name} started", { name });
    let report: CleanupReport;
    try {
      report = await this.#store.cleanup({
        olderThanMs: this.#olderThanMs,
        signal: this.#abort.signal,
      });
    } catch (error) {
      if (this.stopped) {
        logger.debug("Cleanup {name} aborted: the schedule stopped", { name });
      } else {
        logger.error("Cleanup {name} failed: {error}", { name, error });
      }
      return;
    }
    const ms = Math.round(performance.now() - started);
    logger.info(
      "Cleanup {name}: scanned {scanned}, deleted {deleted}, kept in use {skippedInUse}, " +
        "freed {bytesFreed} bytes in {ms} ms",
      { name, ms, ...report, errors: report.errors.length },
    );
    for (const e of report.errors) {
      logger.warn("Cleanup {name} could not handle {path}: {message}", { name, ...e });
    }
    try {
      this.#onReport?.(report);
    } catch (error) {
      logger.error("Cleanup {name}: onReport threw: {error}", { name, error });
    }
  }

  stop(): void {
    if (this.stopped) return;
    this.#abort.abort(new DOMException(`Cleanup ${this.name} stopped`, "AbortError"));
    this.#unhook();
    this.#onStop();
  }
}

function parseSchedule(schedule: string): Cron {
  if (typeof schedule !== "string") {
    throw new TypeError(`schedule must be a cron expression: received ${String(schedule)}`);
  }
  try {
    // No function given: croner only parses, it starts no timer.
    return new Cron(schedule, { utcOffset: 0, mode: "5-or-6-parts" });
  } catch (error) {
    throw new TypeError(
      `schedule must be a cron expression of 5 or 6 fields: received "${schedule}"`,
      { cause: error },
    );
  }
}

type DenoCron = (
  name: string,
  schedule: string,
  options: { signal?: AbortSignal },
  handler: () => Promise<void>,
) => Promise<void>;

function denoCron(): DenoCron | undefined {
  const cron = (Deno as unknown as { cron?: unknown }).cron;
  return typeof cron === "function" ? cron as DenoCron : undefined;
}

class Schedule implements CleanupSchedule {
  readonly #sweeper: Sweeper;
  readonly #cron: Cron;
  readonly schedule: string;
  readonly mode: "deno-cron" | "timer";
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(store: SessionStore, options: ScheduleCleanupOptions) {
    const schedule = options.schedule ?? DEFAULT_CLEANUP_SCHEDULE;
    this.#cron = parseSchedule(schedule);
    this.schedule = schedule;
    const fields = schedule.trim().split(/\s+/).length;
    const requested = options.mode ?? "auto";
    const cron = denoCron();
    if (requested === "deno-cron") {
      if (cron === undefined) {
        throw new TypeError(
          'Deno.cron is not available: run with --unstable-cron, or use mode "timer"',
        );
      }
      if (fields !== 5) {
        throw new TypeError(`Deno.cron takes five cron fields: received "${schedule}"`);
      }
      this.mode = "deno-cron";
    } else if (requested === "timer" || requested === "auto") {
      this.mode = requested === "auto" && cron !== undefined && fields === 5
        ? "deno-cron"
        : "timer";
    } else {
      throw new TypeError(
        `mode must be "auto", "deno-cron" or "timer": received ${String(requested)}`,
      );
    }
    const abort = new AbortController();
    this.#sweeper = new Sweeper(store, options, () => {
      abort.abort();
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      logger.debug("Cleanup {name} stopped", { name: this.#sweeper.name });
    });
    if (this.mode === "deno-cron") {
      try {
        cron!(this.#sweeper.name, schedule, { signal: abort.signal }, () => this.#sweeper.run())
          .catch((error) =>
            logger.error("Deno.cron job {name} ended: {error}", {
              name: this.#sweeper.name,
              error,
            })
          );
      } catch (error) {
        this.#sweeper.stop();
        throw error;
      }
    } else {
      this.#arm(Date.now());
    }
    logger.debug("Cleanup {name} scheduled ({mode}, {schedule})", {
      name: this.#sweeper.name,
      mode: this.mode,
      schedule,
    });
  }

  /** Sets the timer for the first slot after `after` (ms). */
  #arm(after: number): void {
    const next = this.#cron.nextRun(new Date(after));
    if (next === null) {
      logger.warn("Cleanup {name}: the schedule has no further run", { name: this.name });
      return;
    }
    const due = next.getTime();
    const delay = Math.min(Math.max(0, due - Date.now()), MAX_TIMER_MS);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.stopped) return;
      if (Date.now() < due) {
        // A delay longer than setTimeout allows, or a timer that fired early.
        this.#arm(after);
        return;
      }
      // Arm the next slot first, so a long sweep makes later runs skip
      // (and be logged) rather than pile up.
      this.#arm(Math.max(Date.now(), due));
      void this.#sweeper.run();
    }, delay);
  }

  get name(): string {
    return this.#sweeper.name;
  }
  get stopped(): boolean {
    return this.#sweeper.stopped;
  }
  get running(): boolean {
    return this.#sweeper.running;
  }
  get runs(): number {
    return this.#sweeper.runs;
  }
  get skipped(): number {
    return this.#sweeper.skipped;
  }

  nextRun(): Date | undefined {
    if (this.stopped) return undefined;
    return this.#cron.nextRun(new Date()) ?? undefined;
  }

  runNow(): Promise<void> {
    return this.#sweeper.run();
  }

  stop(): void {
    this.#sweeper.stop();
  }

  [Symbol.dispose](): void {
    this.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.stop();
    await this.#sweeper.idle();
  }
}

/**
 * Runs `store.cleanup()` on a schedule. Registers it with `Deno.cron` when
 * the runtime has it (`--unstable-cron`, Deno Deploy) and with a timer in
 * this process otherwise. A run that comes while the previous sweep still
 * goes is skipped (and logged). `stop()` ends the schedule, and so does
 * `store.close()`.
 *
 * Deno Deploy only runs `Deno.cron` jobs registered at the top level of a
 * module, while it loads; this function registers when it is called, which
 * the Deno CLI accepts at any time (Deno 2.9). For Deploy, or to keep
 * `Deno.cron` calls at top level, use {@linkcode cleanupCronHandler}.
 *
 * The timer keeps the process alive, as a `Deno.cron` job does, until the
 * schedule stops or the store closes. Schedules are read in UTC, as
 * `Deno.cron` reads them. Logs go to the `["sessionkv", "cleanup"]` logger.
 *
 * Permissions: those of the store (`--allow-read`, `--allow-write` on its
 * root); `--unstable-cron` to use `Deno.cron`.
 *
 * @param store The store to sweep.
 * @param options `schedule` (default every hour), `olderThanDays` (default
 *   7), `name`, `mode`, `onReport`.
 * @returns The running schedule; `stop()` (or `using`) ends it.
 * @throws {TypeError} On an invalid cron expression, name or store, on a
 *   `Deno.cron` name already taken, or with `mode: "deno-cron"` where
 *   `Deno.cron` is missing.
 * @throws {RangeError} When `olderThanDays` is negative.
 *
 * @example Hourly cleanup of sessions idle for a week
 * ```ts
 * import { scheduleCleanup, SessionStore } from "@sessionkv/core";
 * import { equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * const store = new SessionStore({ root });
 * const cleanup = scheduleCleanup(store, { schedule: "0 * * * *", olderThanDays: 7 });
 * equal(cleanup.stopped, false);
 * await store.close(); // stops the schedule too
 * equal(cleanup.stopped, true);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export function scheduleCleanup(
  store: SessionStore,
  options: ScheduleCleanupOptions = {},
): CleanupSchedule {
  return new Schedule(store, options);
}

/**
 * Makes the handler to register with `Deno.cron` yourself, at the top level
 * of a module as Deno Deploy requires:
 *
 * ```ts ignore
 * const store = new SessionStore({ root: "./data/sessions" });
 * Deno.cron("sessionkv-cleanup", "0 * * * *", cleanupCronHandler(store, { olderThanDays: 7 }));
 * ```
 *
 * A `Deno.cron` job registered this way cannot be unregistered: the
 * handler's `stop()`, and `store.close()`, make it a no-op instead. A call
 * while the previous sweep still runs is skipped (and logged); failures are
 * logged, never thrown (so `Deno.cron` does not retry them).
 *
 * @param store The store to sweep.
 * @param options `olderThanDays` (default 7), `name` (for the logs), `onReport`.
 * @returns The handler, with `stop()`.
 * @throws {TypeError} On an invalid store or name.
 * @throws {RangeError} When `olderThanDays` is negative.
 *
 * @example A handler run by hand (Deno.cron would call it on schedule)
 * ```ts
 * import { cleanupCronHandler, SessionStore } from "@sessionkv/core";
 * import { equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * const store = new SessionStore({ root });
 * const reports: number[] = [];
 * const handler = cleanupCronHandler(store, {
 *   olderThanDays: 0,
 *   onReport: (report) => reports.push(report.deleted),
 * });
 * { using kv = await store.openKv("bot", "s1"); await kv.set(["k"], 1); }
 * await new Promise((resolve) => setTimeout(resolve, 20));
 * await handler();
 * equal(reports[0], 1);
 * await store.close();
 * equal(handler.stopped, true);
 * await handler(); // a no-op now
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export function cleanupCronHandler(
  store: SessionStore,
  options: CleanupJobOptions = {},
): CleanupCronHandler {
  const sweeper = new Sweeper(store, options);
  const handler = () => sweeper.run();
  return Object.defineProperties(handler, {
    stopped: { get: () => sweeper.stopped, enumerable: true },
    stop: { value: () => sweeper.stop() },
    [Symbol.dispose]: { value: () => sweeper.stop() },
  }) as CleanupCronHandler;
}

/** The cleanup settings read by {@linkcode cleanupSettingsFromEnv}. */
export interface CleanupEnvSettings {
  /** `SESSIONKV_CLEANUP_ENABLED`: whether to schedule cleanup. @default {false} */
  enabled: boolean;
  /** `SESSIONKV_CLEANUP_INTERVAL_HOURS`: hours between runs. @default {1} */
  intervalHours: number;
  /** `SESSIONKV_CLEANUP_OLDER_THAN_DAYS`: idle days before deletion. @default {7} */
  olderThanDays: number;
  /** `intervalHours` as a cron expression, for `scheduleCleanup`. @default {"0 * * * *"} */
  schedule: string;
}

/** A cron expression that fires every `hours`, if there is one. */
function intervalToCron(hours: number): string | undefined {
  const minutes = Math.round(hours * 60);
  if (minutes <= 0 || Math.abs(minutes - hours * 60) > 1e-6) return undefined;
  if (minutes < 60) {
    if (60 % minutes !== 0) return undefined;
    return minutes === 1 ? "* * * * *" : `*/${minutes} * * * *`;
  }
  if (minutes % 60 !== 0) return undefined;
  const h = minutes / 60;
  if (h < 24) {
    if (24 % h !== 0) return undefined;
    return h === 1 ? "0 * * * *" : `0 */${h} * * *`;
  }
  if (h === 24) return "0 0 * * *";
  if (h === 168) return "0 0 * * 0";
  return undefined;
}

/**
 * Reads the cleanup settings from `SESSIONKV_CLEANUP_ENABLED` (a boolean:
 * `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`; default off),
 * `SESSIONKV_CLEANUP_INTERVAL_HOURS` (default 1) and
 * `SESSIONKV_CLEANUP_OLDER_THAN_DAYS` (default 7). Unset or empty variables
 * take the default. The interval becomes a cron expression, so it must
 * divide a day evenly (a whole number of minutes that divides an hour, or of
 * hours that divides 24), or be 24 or 168 hours.
 *
 * Permissions: `--allow-env` for the three names (unless `env` is given).
 *
 * @param env Where to look the variables up (default: the process
 *   environment), e.g. `(name) => config[name]`.
 * @returns The settings, with `schedule` ready for {@linkcode scheduleCleanup}.
 * @throws {TypeError} When a variable is not a boolean or a number.
 * @throws {RangeError} When a number is out of range, or the interval does
 *   not divide a day evenly.
 *
 * @example Settings from a configuration object
 * ```ts
 * import { cleanupSettingsFromEnv } from "@sessionkv/core";
 * import { deepEqual } from "node:assert/strict";
 *
 * const env: Record<string, string> = {
 *   SESSIONKV_CLEANUP_ENABLED: "true",
 *   SESSIONKV_CLEANUP_INTERVAL_HOURS: "6",
 *   SESSIONKV_CLEANUP_OLDER_THAN_DAYS: "30",
 * };
 * deepEqual(cleanupSettingsFromEnv((name) => env[name]), {
 *   enabled: true,
 *   intervalHours: 6,
 *   olderThanDays: 30,
 *   schedule: "0 *\/6 * * *",
 * });
 * ```
 */
export function cleanupSettingsFromEnv(env: EnvLookup = processEnv): CleanupEnvSettings {
  const enabled = envBoolean(env, "SESSIONKV_CLEANUP_ENABLED", false);
  const intervalHours = envNumber(env, "SESSIONKV_CLEANUP_INTERVAL_HOURS", 1);
  const olderThanDays = envNumber(env, "SESSIONKV_CLEANUP_OLDER_THAN_DAYS", 7, {
    allowZero: true,
  });
  const schedule = intervalToCron(intervalHours);
  if (schedule === undefined) {
    throw new RangeError(
      "SESSIONKV_CLEANUP_INTERVAL_HOURS must divide a day evenly " +
        `(e.g. 0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 24) or be 168: received "${intervalHours}"`,
    );
  }
  return { enabled, intervalHours, olderThanDays, schedule };
}
