/**
 * Least privilege: child processes run every feature of the store (and the
 * SessionKv test files, and the CLI) with only the permissions the README
 * lists, and no prompt. Control runs with one permission less prove that
 * Deno really enforces what the passing runs rely on.
 *
 * Found minimal sets (Deno 2.9):
 * - node driver: `--allow-read=<root> --allow-write=<root>`;
 * - ffi driver: those plus `--allow-ffi` (unscoped: a path-scoped grant
 *   loads the library but `Deno.UnsafePointerView` needs the full one) and
 *   `--allow-env=DENO_SQLITE_PATH` (unless `sqliteLibPath` is given); no read
 *   access to the library's directory;
 * - `./langgraph`: nothing more;
 * - CLI: read/write on the root plus `--allow-env=SESSIONKV_ROOT,SESSIONKV_WAL,`
 *   `SESSIONKV_BUSY_TIMEOUT_MS` (`cleanup` also `SESSIONKV_CLEANUP_OLDER_THAN_DAYS`).
 */
import { equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { testDrivers } from "./_drivers.ts";
import { withTempDir } from "./_helpers.ts";

const REPO = new URL("../", import.meta.url).pathname;
const FIXTURE = new URL("./fixtures/least_privilege.ts", import.meta.url).pathname;
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const CLI_ENV = "SESSIONKV_ROOT,SESSIONKV_WAL,SESSIONKV_BUSY_TIMEOUT_MS";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function deno(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: options.cwd ?? REPO,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** Runs the feature fixture with exactly `flags`. */
function fixture(
  flags: string[],
  root: string,
  driver: string,
  options: { cwd?: string; env?: Record<string, string>; features?: string } = {},
): Promise<Run> {
  const args = ["run", "--no-prompt", "--quiet", ...flags, FIXTURE, root, driver];
  if (options.features) args.push(options.features);
  return deno(args, options);
}

function assertAllOk(run: Run, what: string): void {
  const failures = run.stdout.split("\n").filter((l) => l.startsWith("fail "));
  ok(failures.length === 0, `${what}: ${failures.join("; ")}`);
  ok(run.stdout.includes("all ok"), `${what}: ${run.stdout}\n${run.stderr}`);
  equal(run.code, 0, `${what}: exit code; ${run.stderr}`);
}

const ffiLibrary = async (): Promise<string> => {
  for (
    const path of [
      Deno.env.get("DENO_SQLITE_PATH"),
      "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0",
      "/usr/lib/aarch64-linux-gnu/libsqlite3.so.0",
      "/usr/lib/libsqlite3.so.0",
    ]
  ) {
    if (path && await Deno.stat(path).then(() => true, () => false)) return path;
  }
  return "";
};

const rw = (root: string) => [`--allow-read=${root}`, `--allow-write=${root}`];

/**
 * Runs the same-source KV test files on one driver in a child `deno test`
 * with read/write on `root` only (it is the TMPDIR), plus `flags`.
 */
async function assertKvSuitePasses(
  root: string,
  driver: "node" | "ffi",
  flags: string[],
  extraEnv = "",
): Promise<void> {
  const run = await deno([
    "test",
    "--no-check", // The suite itself type-checks these files.
    "--no-prompt",
    "--unstable-kv",
    ...rw(root),
    ...flags,
    // The harness's own variables, not the library's.
    "--allow-env=SESSIONKV_TEST_DRIVERS,SESSIONKV_TEST_BACKENDS,SESSIONKV_REQUIRE_FFI," +
    `SESSIONKV_PG_URL,SESSIONKV_REQUIRE_PG,KV_TARGETS${extraEnv}`,
    "tests/kv_close_test.ts",
    "tests/kv_atomic_test.ts",
    "tests/kv_keys_test.ts",
    "tests/kv_list_test.ts",
    "tests/kv_values_test.ts",
  ], {
    env: {
      TMPDIR: root,
      KV_TARGETS: driver,
      SESSIONKV_TEST_DRIVERS: driver,
      SESSIONKV_TEST_BACKENDS: driver,
      // CI sets it to 1 for the main run; the ffi run needs the library.
      SESSIONKV_REQUIRE_FFI: driver === "ffi" ? "1" : "0",
    },
  });
  ok(/ok \| \d+ passed \| 0 failed/.test(run.stdout), `${run.stdout.slice(-3000)}\n${run.stderr}`);
  equal(run.code, 0);
}

if (testDrivers.includes("node")) {
  Deno.test("[node] every store feature works with only --allow-read=<root> --allow-write=<root>", async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      assertAllOk(await fixture(rw(root), root, "node"), "absolute root");
      // A relative root, granted relative to the working directory.
      assertAllOk(
        await fixture(["--allow-read=./data", "--allow-write=./data"], "./data", "node", {
          cwd: tmp,
        }),
        "relative root",
      );
      // Nothing was written outside the roots.
      const names: string[] = [];
      for await (const e of Deno.readDir(tmp)) names.push(e.name);
      equal(names.sort().join(","), "data,root");
    });
  });

  Deno.test("[node] the permission runs are real: without --allow-write or --allow-read on the root the store fails with NotCapable", async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      for (const flags of [[`--allow-read=${root}`], [`--allow-write=${root}`], []]) {
        const run = await fixture(flags, root, "node", { features: "core" });
        equal(run.code, 1, `${flags}: ${run.stdout}`);
        ok(/fail core NotCapable: Requires (read|write) access/.test(run.stdout), run.stdout);
      }
    });
  });

  Deno.test("[node] sessions() lists the sessions with only --allow-read=<root> (a monitor needs no write access)", async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      assertAllOk(await fixture(rw(root), root, "node", { features: "core" }), "setup");
      const run = await fixture([`--allow-read=${root}`], root, "node", { features: "list" });
      assertAllOk(run, "sessions() with read access only");
    });
  });

  Deno.test("[node] the SessionKv test files pass with read/write on one directory (TMPDIR) and no other permission", async () => {
    await withTempDir(async (root) => {
      await assertKvSuitePasses(root, "node", []);
    });
  });

  Deno.test("the CLI runs with read/write on the root and --allow-env for the SESSIONKV_* variables it reads", async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      assertAllOk(await fixture(rw(root), root, "node", { features: "core" }), "setup");
      const sessions = await deno([
        "run",
        "--no-prompt",
        ...rw(root),
        `--allow-env=${CLI_ENV}`,
        CLI,
        "sessions",
        "--root",
        root,
        "--json",
      ]);
      equal(sessions.code, 0, sessions.stderr);
      equal(JSON.parse(sessions.stdout).sessions.length, 1);
      const cleanup = await deno([
        "run",
        "--no-prompt",
        ...rw(root),
        `--allow-env=${CLI_ENV},SESSIONKV_CLEANUP_OLDER_THAN_DAYS`,
        CLI,
        "cleanup",
        "--root",
        root,
        "--dry-run",
        "--json",
      ]);
      equal(cleanup.code, 0, cleanup.stderr);
      equal(JSON.parse(cleanup.stdout).scanned, 1);
    });
  });

  Deno.test("the CLI given --root does not need --allow-env=SESSIONKV_ROOT", async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      assertAllOk(await fixture(rw(root), root, "node", { features: "core" }), "setup");
      const run = await deno([
        "run",
        "--no-prompt",
        ...rw(root),
        "--allow-env=SESSIONKV_WAL,SESSIONKV_BUSY_TIMEOUT_MS",
        CLI,
        "sessions",
        "--root",
        root,
        "--json",
      ]);
      equal(run.code, 0, `exit ${run.code}: ${run.stderr.split("\n")[0]}`);
    });
  });
}

if (testDrivers.includes("ffi")) {
  Deno.test("[ffi] every store feature works with --allow-read=<root> --allow-write=<root> --allow-ffi --allow-env=DENO_SQLITE_PATH", async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      const flags = [...rw(root), "--allow-ffi", "--allow-env=DENO_SQLITE_PATH"];
      assertAllOk(await fixture(flags, root, "ffi"), "library by its usual name");
      const library = await ffiLibrary();
      if (library) {
        // The library named by DENO_SQLITE_PATH: still no read access to its directory.
        assertAllOk(
          await fixture(flags, root, "ffi", { env: { DENO_SQLITE_PATH: library } }),
          `DENO_SQLITE_PATH=${library}`,
        );
      }
    });
  });

  Deno.test("[ffi] without --allow-env=DENO_SQLITE_PATH or with a path-scoped --allow-ffi the driver fails, naming the flag", async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      const noEnv = await fixture([...rw(root), "--allow-ffi"], root, "ffi", { features: "core" });
      equal(noEnv.code, 1);
      ok(noEnv.stdout.includes("--allow-env=DENO_SQLITE_PATH"), noEnv.stdout);
      const library = await ffiLibrary();
      if (library) {
        const scoped = await fixture(
          [...rw(root), `--allow-ffi=${library}`, "--allow-env=DENO_SQLITE_PATH"],
          root,
          "ffi",
          { features: "core", env: { DENO_SQLITE_PATH: library } },
        );
        equal(scoped.code, 1, "a path-scoped --allow-ffi is not enough (README says unscoped)");
        ok(/NotCapable: Requires ffi access/.test(scoped.stdout), scoped.stdout);
      }
    });
  });

  Deno.test("[ffi] the SessionKv test files pass with read/write on one directory, --allow-ffi and --allow-env=DENO_SQLITE_PATH", async () => {
    await withTempDir(async (root) => {
      await assertKvSuitePasses(root, "ffi", ["--allow-ffi"], ",DENO_SQLITE_PATH");
    });
  });
}
