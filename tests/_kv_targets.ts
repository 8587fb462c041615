/**
 * The KV implementations every same-source KV test runs against: real Deno KV
 * (`Deno.openKv(":memory:")`, the oracle) and `SessionKv` on each backend
 * of `_backends.ts` (SQLite files on each driver, PostgreSQL, Deno KV). Set `KV_TARGETS=denokv,node` (comma list of target ids) to run
 * a subset.
 */
import { type BackendTarget, testBackends } from "./_backends.ts";

/** An open KV plus what disposing it cleans up. */
export interface OpenedKv extends AsyncDisposable {
  kv: Deno.Kv;
}

/** One implementation under test. */
export interface KvTarget {
  /** Short id, e.g. `denokv`, `node`, `ffi`. */
  id: string;
  /** `true` for real Deno KV, the oracle. */
  oracle: boolean;
  /** Opens a fresh, empty KV. */
  open(): Promise<OpenedKv>;
}

const denoKv: KvTarget = {
  id: "denokv",
  oracle: true,
  async open() {
    const kv = await Deno.openKv(":memory:");
    return {
      kv,
      [Symbol.asyncDispose]() {
        try {
          kv.close();
        } catch { /* closed by the test */ }
        return Promise.resolve();
      },
    };
  },
};

function sessionTarget(backend: BackendTarget): KvTarget {
  return {
    id: backend.id,
    oracle: false,
    async open() {
      const opened = await backend.makeStore();
      const kv = await opened.store.openKv("bot", "session");
      return {
        kv: kv as unknown as Deno.Kv,
        async [Symbol.asyncDispose]() {
          kv[Symbol.dispose]();
          await opened[Symbol.asyncDispose]();
        },
      };
    },
  };
}

const wanted = Deno.env.get("KV_TARGETS")?.split(",");

/** Every target selected for this run. */
export const kvTargets: KvTarget[] = [denoKv, ...testBackends.map(sessionTarget)]
  .filter((t) => wanted === undefined || wanted.includes(t.id));

/** The targets other than the oracle. */
export const sessionTargets: KvTarget[] = kvTargets.filter((t) => !t.oracle);
