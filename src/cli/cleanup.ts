/**
 * `deno task cleanup`: sweeps idle sessions with `SessionStore.cleanup()`,
 * shows progress on a terminal, then a summary table or one JSON document.
 *
 * @module
 */
import { envNumber, processEnv } from "../_env.ts";
import { type CleanupReport, SessionStore } from "../store.ts";
import {
  type CommandIo,
  exists,
  parseOptions,
  storeOptions,
  USAGE,
  UsageError,
} from "./_common.ts";
import {
  displayText,
  formatBytes,
  formatCount,
  formatDuration,
  formatElapsed,
  formatUtc,
  parseDuration,
} from "./_format.ts";
import { LineWriter, ProgressLine } from "./_output.ts";

const DAY_MS = 86_400_000;
/** Error details listed in the human output; `--json` lists all. */
const MAX_LISTED_ERRORS = 20;

/** The idle time: `--older-than`, else `SESSIONKV_CLEANUP_OLDER_THAN_DAYS`, else 7 days. */
function olderThan(flag: string | undefined): number {
  if (flag !== undefined) {
    const ms = parseDuration(flag);
    if (ms === undefined) {
      throw new UsageError(
        `--older-than must be a duration like 7d, 36h, 90m or 30s: received "${flag}"`,
      );
    }
    return ms;
  }
  try {
    return envNumber(processEnv, "SESSIONKV_CLEANUP_OLDER_THAN_DAYS", 7, { allowZero: true }) *
      DAY_MS;
  } catch (error) {
    throw new UsageError((error as Error).message, { cause: error });
  }
}

/**
 * Runs `cleanup` with `args` (the words after the subcommand).
 *
 * @returns The exit code: 0, 1 when some session could not be handled, 130
 *   when interrupted.
 * @throws {UsageError} On bad arguments or settings.
 */
export async function cleanupCommand(args: string[], io: CommandIo): Promise<number> {
  const values = parseOptions(args, {
    root: { type: "string" },
    "older-than": { type: "string" },
    "dry-run": { type: "boolean" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  const out = new LineWriter(io.stdout);
  if (values.help) {
    await out.write(USAGE);
    await out.flush();
    return 0;
  }
  const olderThanMs = olderThan(values["older-than"] as string | undefined);
  const dryRun = values["dry-run"] === true;
  const json = values.json === true;
  const { store: options, rootDisplay } = storeOptions(values.root as string | undefined);
  const err = new LineWriter(io.stderr);

  if (!(await exists(options.root))) {
    await err.line(`note: "${displayText(options.root)}" does not exist: nothing to clean`);
    await err.flush();
  }

  await using store = new SessionStore(options);
  const progress = new ProgressLine(io.progress);
  const abort = new AbortController();
  const onSignal = () => abort.abort(new DOMException("Interrupted", "AbortError"));
  let listening = false;
  try {
    Deno.addSignalListener("SIGINT", onSignal);
    listening = true;
  } catch {
    // Signals are not available here: Ctrl-C ends the process as usual.
  }
  const started = performance.now();
  let report: CleanupReport;
  try {
    const verb = dryRun ? "would delete" : "deleted";
    report = await store.cleanup({
      olderThanMs,
      dryRun,
      signal: abort.signal,
      onProgress: (p) =>
        progress.update(
          `${dryRun ? "Dry run" : "Cleaning"} ${rootDisplay}: ${formatCount(p.scanned)} scanned, ` +
            `${formatCount(p.deleted)} ${verb}, ${formatCount(p.skippedInUse)} in use`,
        ),
    });
  } catch (error) {
    progress.clear();
    if (abort.signal.aborted) {
      await err.line("Interrupted: the sweep stopped between two sessions");
      await err.flush();
      return 130;
    }
    throw error;
  } finally {
    progress.clear();
    if (listening) Deno.removeSignalListener("SIGINT", onSignal);
  }
  const elapsedMs = performance.now() - started;

  if (json) {
    await out.line(JSON.stringify(
      {
        root: options.root,
        olderThanMs,
        ...report,
        cutoff: report.cutoff.toISOString(),
        elapsedMs: Math.round(elapsedMs),
      },
      null,
      2,
    ));
  } else {
    await printSummary(out, err, report, rootDisplay, olderThanMs, elapsedMs);
  }
  await out.flush();
  await err.flush();
  return report.errors.length > 0 ? 1 : 0;
}

async function printSummary(
  out: LineWriter,
  err: LineWriter,
  report: CleanupReport,
  root: string,
  olderThanMs: number,
  elapsedMs: number,
): Promise<void> {
  const row = (label: string, value: string, note = "") =>
    out.line(`  ${label.padEnd(22)}${value.padStart(14)}${note ? `  ${note}` : ""}`);
  await out.line(
    `${report.dryRun ? "Dry run: nothing was deleted. " : ""}` +
      `Sessions under ${displayText(root)} idle for ${formatDuration(olderThanMs)}`,
  );
  await out.line(`(no write since ${formatUtc(report.cutoff)} UTC)`);
  await out.line();
  await row("scanned", formatCount(report.scanned));
  await row(report.dryRun ? "would delete" : "deleted", formatCount(report.deleted));
  await row("kept, in use", formatCount(report.skippedInUse), "open or leased somewhere");
  await row(report.dryRun ? "would free" : "freed", formatBytes(report.bytesFreed));
  await row("errors", formatCount(report.errors.length));
  await row("time", formatElapsed(elapsedMs));
  for (const e of report.errors.slice(0, MAX_LISTED_ERRORS)) {
    await err.line(`error: ${displayText(e.path)}: ${displayText(e.message)}`);
  }
  if (report.errors.length > MAX_LISTED_ERRORS) {
    await err.line(
      `... and ${formatCount(report.errors.length - MAX_LISTED_ERRORS)} more (--json lists all)`,
    );
  }
}
