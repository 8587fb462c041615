/**
 * The sessionkv command line: `deno task cleanup` and `deno task sessions`.
 *
 * ```sh
 * deno task cleanup  [--root DIR] [--older-than 7d] [--dry-run] [--json]
 * deno task sessions [--root DIR] [--bot ID] [--json]
 * ```
 *
 * `cleanup` deletes the sessions with no write for longer than
 * `--older-than` (default `SESSIONKV_CLEANUP_OLDER_THAN_DAYS` days, else 7
 * days) and never one that is open or leased, in this process or another;
 * it is safe on a live system. `sessions` lists the sessions on disk. Both
 * stream, so a root with 100,000 sessions needs little memory. The root
 * comes from `--root`, else `SESSIONKV_ROOT`, else `./data/sessions`; store
 * settings from `SESSIONKV_WAL` and `SESSIONKV_BUSY_TIMEOUT_MS`.
 *
 * A terminal gets a progress line and tables that fit 80 columns; `--json`
 * prints one JSON document instead. Exit status: 0 on success, 1 when some
 * session or directory could not be handled (listed in the output), 2 on bad
 * arguments or settings (with the usage on stderr), 130 when interrupted.
 *
 * Permissions: `--allow-read`, `--allow-write` (the root) and `--allow-env`.
 *
 * @module
 */
import { USAGE, UsageError } from "./src/cli/_common.ts";
import { cleanupCommand } from "./src/cli/cleanup.ts";
import { OutputClosed } from "./src/cli/_output.ts";
import { sessionsCommand } from "./src/cli/sessions.ts";

const encoder = new TextEncoder();

async function writeErr(text: string): Promise<void> {
  const bytes = encoder.encode(text);
  let written = 0;
  try {
    while (written < bytes.length) written += await Deno.stderr.write(bytes.subarray(written));
  } catch {
    // Nowhere left to report to.
  }
}

/**
 * Runs the command line with `args` (`Deno.args`): `cleanup ...` or
 * `sessions ...`. Prints to stdout and stderr and returns the exit code
 * instead of exiting, so it can be called from code and tests.
 *
 * Permissions: `--allow-read`, `--allow-write` on the root, `--allow-env`.
 *
 * @param args The subcommand and its options.
 * @returns 0 on success, 1 when some session or directory could not be
 *   handled, 2 on bad arguments or settings, 130 when interrupted.
 *
 * @example A dry run over an empty root
 * ```ts
 * import { main } from "@sessionkv/core/cli";
 * import { equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * equal(await main(["cleanup", "--root", root, "--dry-run", "--json"]), 0);
 * equal(await main(["cleanup", "--older-than", "soon"]), 2);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  const io = { stdout: Deno.stdout, stderr: Deno.stderr, progress: Deno.stderr.isTerminal() };
  try {
    switch (command) {
      case "cleanup":
        return await cleanupCommand(rest, io);
      case "sessions":
        return await sessionsCommand(rest, io);
      case "-h":
      case "--help":
      case "help": {
        const bytes = encoder.encode(USAGE);
        let written = 0;
        while (written < bytes.length) written += await Deno.stdout.write(bytes.subarray(written));
        return 0;
      }
      case undefined:
        throw new UsageError("Missing command: cleanup or sessions");
      default:
        throw new UsageError(`Unknown command "${command}": expected cleanup or sessions`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      await writeErr(`error: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof OutputClosed) return 0; // e.g. `| head`: the reader has enough.
    await writeErr(`error: ${(error as Error)?.message ?? String(error)}\n`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
