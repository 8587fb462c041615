/**
 * The SQLite drivers the suite runs on: `node` always, `ffi` when the SQLite
 * library loads and `--allow-ffi` is granted. `SESSIONKV_TEST_DRIVERS=node`
 * restricts the matrix; `SESSIONKV_REQUIRE_FFI=1` (set by CI) makes a missing
 * FFI driver an error instead of a skip.
 */
export type DriverName = "node" | "ffi";

async function ffiAvailable(): Promise<boolean> {
  try {
    const { loadFfiDriver } = await import("../src/sqlite/ffi_driver.ts");
    loadFfiDriver();
    return true;
  } catch (error) {
    if (Deno.env.get("SESSIONKV_REQUIRE_FFI") === "1") throw error;
    console.warn(`ffi driver not tested: ${(error as Error).message}`);
    return false;
  }
}

const only = Deno.env.get("SESSIONKV_TEST_DRIVERS")?.split(",");
const probeFfi = only === undefined || only.includes("ffi");
const all: DriverName[] = ["node", ...(probeFfi && await ffiAvailable() ? ["ffi" as const] : [])];

/** The drivers selected for this run. */
export const testDrivers: DriverName[] = all.filter((d) => only === undefined || only.includes(d));
