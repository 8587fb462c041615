/**
 * What both subcommands share: argument parsing that turns every mistake
 * into a {@linkcode UsageError} (exit code 2), the usage text, and the store
 * settings from the `SESSIONKV_*` variables.
 *
 * @module
 */
import { isAbsolute, join } from "node:path";
import { parseArgs } from "node:util";
import { type EnvLookup, processEnv, storeOptionsFromEnv } from "../_env.ts";
import type { SessionStoreOptions } from "../store.ts";
import type { Writer } from "./_output.ts";

/** Where a command writes. */
export interface CommandIo {
  /** Results: the table or the JSON document. */
  stdout: Writer;
  /** Messages and progress. */
  stderr: Writer;
  /** Whether to draw a progress line (stderr is a terminal). */
  progress: boolean;
}

/** A bad argument or setting: the CLI prints it with the usage and exits with 2. */
export class UsageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UsageError";
  }
}

/** The usage message (fits 80 columns). */
export const USAGE = `\
Usage:
  deno task cleanup  [--root DIR] [--older-than DURATION] [--dry-run] [--json]
  deno task sessions [--root DIR] [--bot ID] [--json]

  or: deno run --allow-read --allow-write --allow-env cli.ts <command> ...

Commands:
  cleanup    Delete sessions with no write for a while. Never deletes one that
             is open or leased, in this process or in another.
  sessions   List the sessions on disk with their size and last activity.

Options:
  --root DIR             Sessions root directory
                         (default: $SESSIONKV_ROOT, else ./data/sessions)
  --older-than DURATION  Idle time before a session is deleted: 7d, 36h, 90m,
                         30s or 1d12h (default: the number of days in
                         $SESSIONKV_CLEANUP_OLDER_THAN_DAYS, else 7d)
  --dry-run              Report what would be deleted, delete nothing
  --bot ID               Only this bot's sessions
  --json                 Print one JSON document instead of tables
  -h, --help             Show this help

Environment: SESSIONKV_ROOT, SESSIONKV_CLEANUP_OLDER_THAN_DAYS, SESSIONKV_WAL,
SESSIONKV_BUSY_TIMEOUT_MS.

Exit status: 0 success, 1 some session or directory could not be handled,
2 bad arguments or settings.
`;

type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string }>;

/**
 * Parses `args` strictly (no positionals, no unknown options).
 *
 * @throws {UsageError} On anything `parseArgs` rejects.
 */
export function parseOptions<T extends OptionSpec>(
  args: string[],
  options: T,
): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({ args, options, strict: true, allowPositionals: false });
    return values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw new UsageError((error as Error).message, { cause: error });
  }
}

/** Store options from the environment and `--root`. */
export interface CliStoreOptions {
  /** Options for `new SessionStore()`. */
  store: SessionStoreOptions & { root: string };
  /** How to show the root to the user. */
  rootDisplay: string;
}

/**
 * The store's options: `SESSIONKV_ROOT`, `SESSIONKV_WAL`,
 * `SESSIONKV_BUSY_TIMEOUT_MS`, with `--root` overriding the root. A relative
 * `--root` is taken from the directory `deno task` was started in
 * (`INIT_CWD`), as a user typing it expects.
 *
 * @throws {UsageError} When a variable has a bad value.
 */
export function storeOptions(
  rootFlag: string | undefined,
  env: EnvLookup = processEnv,
): CliStoreOptions {
  let fromEnv;
  // With --root, SESSIONKV_ROOT is not read (so needs no --allow-env).
  const lookup: EnvLookup = rootFlag === undefined
    ? env
    : (name) => name === "SESSIONKV_ROOT" ? undefined : env(name);
  try {
    fromEnv = storeOptionsFromEnv(lookup);
  } catch (error) {
    throw new UsageError((error as Error).message, { cause: error });
  }
  let root = fromEnv.root;
  if (rootFlag !== undefined) {
    if (rootFlag === "") throw new UsageError("--root cannot be empty");
    root = rootFlag;
    if (!isAbsolute(rootFlag)) {
      let initCwd: string | undefined;
      try {
        initCwd = env("INIT_CWD");
      } catch {
        // No permission to read it: stay relative to the working directory.
      }
      if (initCwd) root = join(initCwd, rootFlag);
    }
  }
  return { store: { ...fromEnv, root }, rootDisplay: rootFlag ?? fromEnv.root };
}

/** Whether `path` exists (any kind of file). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
