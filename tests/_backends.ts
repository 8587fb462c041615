/**
 * The storage backends the store-level suites run on, each a way to make a
 * fresh, empty `SessionStore`:
 *
 * - `node`, `ffi`: SQLite files under a temp root (see `_drivers.ts`);
 * - `node-exclusive`: the same with `lockingMode: "exclusive"`;
 * - `postgres`: `postgresBackend` on the server at `SESSIONKV_PG_URL`, each
 *   store in its own schema (dropped afterwards); skipped when the variable
 *   is unset, an error when `SESSIONKV_REQUIRE_PG=1` (set by CI);
 * - `denokv-backend`: `denoKvBackend` over `Deno.openKv(path)` on a temp file.
 *
 * `SESSIONKV_TEST_BACKENDS=node,postgres` restricts the matrix.
 */
import type { SessionStore, SessionStoreOptions } from "../mod.ts";
import { testDrivers } from "./_drivers.ts";

/** A store under test and what disposing it cleans up. */
export interface TestStore extends AsyncDisposable {
  store: SessionStore;
}

/** Store options that apply to every backend. */
export type CommonStoreOptions = Omit<
  SessionStoreOptions,
  "root" | "backend" | "driver" | "wal" | "cacheSizeKiB" | "sqliteLibPath" | "lockingMode"
>;

/** One backend under test. */
export interface BackendTarget {
  /** `node`, `ffi`, `node-exclusive`, `postgres` or `denokv-backend`. */
  id: string;
  /** Makes a fresh store with no sessions. */
  makeStore(options?: CommonStoreOptions): Promise<TestStore>;
}

function filesTarget(
  driver: "node" | "ffi",
  lockingMode: "normal" | "exclusive" = "normal",
): BackendTarget {
  return {
    id: lockingMode === "normal" ? driver : `${driver}-${lockingMode}`,
    async makeStore(options = {}) {
      const { SessionStore } = await import("../mod.ts");
      const root = await Deno.makeTempDir({ prefix: "sessionkv-test-" });
      const store = new SessionStore({ ...options, root, driver, lockingMode });
      return {
        store,
        async [Symbol.asyncDispose]() {
          await store.close();
          await Deno.remove(root, { recursive: true });
        },
      };
    },
  };
}

const pgUrl = Deno.env.get("SESSIONKV_PG_URL");
if (pgUrl === undefined && Deno.env.get("SESSIONKV_REQUIRE_PG") === "1") {
  throw new Error("SESSIONKV_REQUIRE_PG=1 but SESSIONKV_PG_URL is not set");
}

const postgresTarget: BackendTarget = {
  id: "postgres",
  async makeStore(options = {}) {
    const { SessionStore } = await import("../mod.ts");
    const { postgresBackend, dropSchema } = await import("../postgres.ts");
    const schema = `sessionkv_test_${crypto.randomUUID().replaceAll("-", "")}`;
    const store = new SessionStore({
      ...options,
      backend: postgresBackend({ url: pgUrl!, schema, max: 4 }),
    });
    return {
      store,
      async [Symbol.asyncDispose]() {
        await store.close();
        await dropSchema({ url: pgUrl!, schema });
      },
    };
  },
};

const denoKvTarget: BackendTarget = {
  id: "denokv-backend",
  async makeStore(options = {}) {
    const { SessionStore } = await import("../mod.ts");
    const { denoKvBackend } = await import("../denokv.ts");
    const dir = await Deno.makeTempDir({ prefix: "sessionkv-test-denokv-" });
    const kv = await Deno.openKv(`${dir}/kv.sqlite3`);
    const store = new SessionStore({ ...options, backend: denoKvBackend(kv) });
    return {
      store,
      async [Symbol.asyncDispose]() {
        await store.close();
        kv.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  },
};

const only = Deno.env.get("SESSIONKV_TEST_BACKENDS")?.split(",");

/** Every backend selected for this run. */
export const testBackends: BackendTarget[] = [
  ...testDrivers.map((driver) => filesTarget(driver)),
  ...(testDrivers.includes("node") ? [filesTarget("node", "exclusive")] : []),
  ...(pgUrl === undefined ? [] : [postgresTarget]),
  denoKvTarget,
].filter((b) => only === undefined || only.includes(b.id));
