/**
 * `deno task sessions`: lists the sessions on disk as a table that fits 80
 * columns, or as one JSON document. Both stream: rows are printed as the
 * directory walk finds them, so 100,000 sessions need no more memory than 10.
 *
 * @module
 */
import { validateId } from "../session_id.ts";
import { SessionStore } from "../store.ts";
import {
  type CommandIo,
  exists,
  parseOptions,
  storeOptions,
  USAGE,
  UsageError,
} from "./_common.ts";
import { displayText, fit, formatBytes, formatCount, formatUtc } from "./_format.ts";
import { LineWriter, ProgressLine } from "./_output.ts";

/** Column widths: 14 + 22 + 9 + 19 + 4 plus four 2-space gaps = 76 columns. */
const BOT = 14;
const SESSION = 22;
const SIZE = 9;
const LAST = 19;
const OPEN = 4;

function row(bot: string, session: string, size: string, last: string, open: string): string {
  return [
    fit(bot, BOT),
    fit(session, SESSION),
    fit(size, SIZE, "right"),
    fit(last, LAST),
    fit(open, OPEN),
  ].join("  ").trimEnd();
}

/**
 * Runs `sessions` with `args` (the words after the subcommand).
 *
 * @returns The exit code (0).
 * @throws {UsageError} On bad arguments or settings.
 */
export async function sessionsCommand(args: string[], io: CommandIo): Promise<number> {
  const values = parseOptions(args, {
    root: { type: "string" },
    bot: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  const out = new LineWriter(io.stdout);
  if (values.help) {
    await out.write(USAGE);
    await out.flush();
    return 0;
  }
  const botId = values.bot as string | undefined;
  if (botId !== undefined) {
    try {
      validateId(botId, "--bot");
    } catch (error) {
      throw new UsageError((error as Error).message, { cause: error });
    }
  }
  const json = values.json === true;
  const { store: options, rootDisplay } = storeOptions(values.root as string | undefined);
  if (!(await exists(options.root))) {
    const err = new LineWriter(io.stderr);
    await err.line(`note: "${displayText(options.root)}" does not exist`);
    await err.flush();
  }

  await using store = new SessionStore(options);
  // Rows stream to stdout; a progress line would tangle with them on a
  // terminal, so it is drawn only when stdout is redirected.
  const progress = new ProgressLine(io.progress && !Deno.stdout.isTerminal());
  let count = 0;
  let totalBytes = 0;
  let open = 0;

  if (json) {
    await out.write(`{\n  "root": ${JSON.stringify(options.root)},\n  "sessions": [`);
  } else {
    await out.line(row("bot", "session", "size", "last activity (UTC)", "open"));
  }
  try {
    for await (const s of store.sessions(botId === undefined ? {} : { botId })) {
      count++;
      totalBytes += s.sizeBytes;
      if (s.open) open++;
      if (json) {
        await out.write(
          `${count > 1 ? "," : ""}\n    ` +
            JSON.stringify({ ...s, lastActivity: s.lastActivity.toISOString() }),
        );
      } else {
        await out.line(row(
          displayText(s.botId),
          displayText(s.sessionId),
          formatBytes(s.sizeBytes),
          formatUtc(s.lastActivity),
          s.open ? "yes" : "no",
        ));
      }
      progress.update(`Listing ${rootDisplay}: ${formatCount(count)} sessions`);
    }
  } finally {
    progress.clear();
  }
  if (json) {
    await out.line(
      `${count > 0 ? "\n  " : ""}],\n  "count": ${count},\n  "totalBytes": ${totalBytes},\n` +
        `  "open": ${open}\n}`,
    );
  } else {
    await out.line(
      count === 0
        ? `No sessions under ${displayText(rootDisplay)}`
        : `${formatCount(count)} session${count === 1 ? "" : "s"}, ${formatBytes(totalBytes)}, ` +
          `${formatCount(open)} open`,
    );
  }
  await out.flush();
  return 0;
}
