/**
 * Queues: `enqueue` option validation (Deno KV's messages) and the
 * `listenQueue` delivery loop, written once above the engine seam. Messages
 * live in the session's storage, so they survive restarts; delivery is at
 * least once, after `delay`, retried per `backoffSchedule`, and written to
 * `keysIfUndelivered` when retries run out.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { deserializeV8 } from "./codec/value_codec.ts";
import { serdeTypeName } from "./codec/key_codec.ts";
import type { CommitPlan, KvAccess, QueuedMessage } from "./engine.ts";

const logger = getLogger(["sessionkv", "queue"]);

/** Longest `delay`: 30 days. */
export const MAX_DELAY_MS = 30 * 24 * 60 * 60 * 1000;
/** Most retry intervals. */
export const MAX_BACKOFF_INTERVALS = 5;
/** Longest retry interval: one hour. */
export const MAX_BACKOFF_INTERVAL_MS = 3_600_000;
/** Deno KV's default retry schedule. */
export const DEFAULT_BACKOFF = [100, 1000, 5000, 30000, 60000];

/** A claimed message is redelivered if its listener stays silent this long. */
const LEASE_MS = 5000;
/** How often a listener renews its claim on a message being handled. */
const KEEPALIVE_MS = 2000;
/** How often an idle listener checks for messages from other processes. */
const POLL_MS = 200;
/** Messages handled at once by one listener. */
const MAX_IN_FLIGHT = 32;

/** Options of `enqueue()`. */
export interface KvEnqueueOptions {
  /** Milliseconds to wait before the first delivery (at most 30 days). */
  delay?: number;
  /** Keys set to the message if it cannot be delivered. */
  keysIfUndelivered?: readonly (readonly unknown[])[];
  /** Milliseconds between retries after a failed delivery (at most 5). */
  backoffSchedule?: number[];
}

/**
 * Validates `enqueue` options as Deno KV does.
 *
 * @throws {TypeError} On a bad delay or backoff schedule.
 */
export function validateEnqueueOptions(options: KvEnqueueOptions | undefined): void {
  // Deno KV's builder-time checks, with its comparisons: a value of the wrong
  // type that passes them (the string "5") is refused at commit instead, by
  // `planEnqueueOptions`, as Deno KV's serializer does.
  const delay = options?.delay as number | undefined;
  if (delay !== undefined) {
    if (delay < 0) throw new TypeError(`Delay must be >= 0: received ${delay}`);
    if (delay > MAX_DELAY_MS) {
      throw new TypeError(`Delay cannot be greater than 30 days: received ${delay}`);
    }
    if (Number.isNaN(delay)) throw new TypeError("Delay cannot be NaN");
  }
  const schedule = options?.backoffSchedule;
  if (schedule !== undefined) {
    if (schedule.length > MAX_BACKOFF_INTERVALS) {
      throw new TypeError(
        `Invalid backoffSchedule, max ${MAX_BACKOFF_INTERVALS} intervals allowed`,
      );
    }
    for (let i = 0; i < schedule.length; i++) {
      const interval = schedule[i]!;
      if (interval < 0 || interval > MAX_BACKOFF_INTERVAL_MS || Number.isNaN(interval)) {
        throw new TypeError(`Invalid backoffSchedule, interval at index ${i} is invalid`);
      }
    }
  }
}

function serdeName(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (Array.isArray(value)) return "array";
  return serdeTypeName(value);
}

/** An integer option as Deno KV's serializer takes it (numbers and bigints). */
function integer(value: unknown): number {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  throw new TypeError(`serde_v8 error: invalid type; expected: integer, got: ${serdeName(value)}`);
}

/**
 * The delay and backoff schedule of an enqueue, type-checked at commit.
 *
 * @throws {TypeError} Deno KV's serializer errors for values of the wrong type.
 */
export function enqueueDelay(delay: unknown): number {
  return delay === undefined ? 0 : integer(delay);
}

/**
 * The backoff schedule of an enqueue, type-checked at commit.
 *
 * @throws {TypeError} Deno KV's serializer errors for values of the wrong type.
 */
export function enqueueBackoff(schedule: unknown): number[] {
  if (schedule === undefined) return [...DEFAULT_BACKOFF];
  if (!Array.isArray(schedule)) {
    throw new TypeError(
      `serde_v8 error: invalid type; expected: array, got: ${serdeName(schedule)}`,
    );
  }
  return schedule.map(integer);
}

/**
 * Delivers a session's queued messages to `handler` until `signal` aborts.
 * Sleeps until the next message is due; wakes at once on enqueues made in
 * this process and on finished deliveries (a retry may be due sooner), and
 * polls the change token for commits of other processes.
 */
export async function runQueueListener(
  access: KvAccess,
  handler: (value: unknown) => unknown,
  signal: AbortSignal,
): Promise<void> {
  // `kicked` remembers a wake-up that came while no sleep was under way, so
  // an enqueue committed between the last query and the sleep is not missed.
  let kicked = false;
  let wake: (() => void) | undefined;
  const kick = () => {
    kicked = true;
    const w = wake;
    wake = undefined;
    w?.();
  };
  const unsubscribe = access.subscribe({
    committed(plan: CommitPlan) {
      if (plan.enqueues.length > 0) kick();
    },
    closed: kick,
  });
  signal.addEventListener("abort", kick, { once: true });
  const inFlight = new Set<Promise<void>>();
  try {
    while (!signal.aborted) {
      if (inFlight.size >= MAX_IN_FLIGHT) {
        await Promise.race(inFlight);
        continue;
      }
      kicked = false;
      const message = await access.run((e) => e.dequeue(Date.now(), LEASE_MS));
      if (message !== undefined) {
        if (signal.aborted) {
          // Closed while claiming: hand the message back untouched.
          await access.run((e) => e.retryMessage(message.id, Date.now(), message.backoffSchedule))
            .catch(() => undefined);
          break;
        }
        // A finished delivery may have rescheduled its message (a retry due
        // sooner than the claim's deadline): look again then.
        const delivery = deliver(access, handler, message).finally(() => {
          inFlight.delete(delivery);
          kick();
        });
        inFlight.add(delivery);
        continue;
      }
      // Idle: sleep until the next message is due, a local enqueue or
      // delivery, a foreign commit (seen by polling the change token, read
      // before the queue so that nothing committed after it is missed) or
      // the end.
      const token = await access.run((e) => e.changeToken());
      const next = await access.run((e) => e.nextDelivery());
      while (!kicked && !signal.aborted) {
        const wait = next === undefined ? POLL_MS : Math.min(POLL_MS, next - Date.now());
        if (wait <= 0) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, wait);
          wake = done;
          function done() {
            clearTimeout(timer);
            wake = undefined;
            resolve();
          }
        });
        if (kicked || signal.aborted) break;
        if (next !== undefined && Date.now() >= next) break;
        if (await access.run((e) => e.changeToken()) !== token) break;
      }
    }
  } finally {
    signal.removeEventListener("abort", kick);
    unsubscribe();
    await Promise.allSettled(inFlight);
  }
}

async function deliver(
  access: KvAccess,
  handler: (value: unknown) => unknown,
  message: QueuedMessage,
): Promise<void> {
  const keepalive = setInterval(() => {
    access.run((e) => e.extendMessage(message.id, Date.now() + LEASE_MS)).catch(() => undefined);
  }, KEEPALIVE_MS);
  let ok = false;
  try {
    await handler(deserializeV8(message.payload));
    ok = true;
  } catch (error) {
    logger.error("Exception in queue handler: {error}", { error });
  } finally {
    clearInterval(keepalive);
  }
  try {
    if (ok) {
      await commitDequeued(access, message, []);
    } else if (message.backoffSchedule.length > 0) {
      const [first, ...rest] = message.backoffSchedule;
      await access.run((e) => e.retryMessage(message.id, Date.now() + first!, rest));
    } else {
      // Out of retries: the message goes to keysIfUndelivered in one commit.
      await commitDequeued(access, message, message.keysIfUndelivered);
    }
  } catch (error) {
    // The store closed or the file failed: the claim lapses and the message
    // is delivered again later.
    logger.warn("Could not finish queue message {id}: {error}", { id: message.id, error });
  }
}

async function commitDequeued(
  access: KvAccess,
  message: QueuedMessage,
  keys: Uint8Array[],
): Promise<void> {
  const plan: CommitPlan = {
    checks: [],
    mutations: keys.map((key) => ({
      type: "set",
      key,
      versionstampKey: false,
      value: { encoding: 1, bytes: message.payload },
      expireIn: null,
    })),
    enqueues: [],
    dequeued: message.id,
  };
  const now = Date.now();
  await access.run((e) => e.commit(plan, now));
  if (keys.length > 0) access.committed(plan);
}
