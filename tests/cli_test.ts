/**
 * The command line (`cli.ts cleanup|sessions`), run as a child process the
 * way `deno task` runs it: exit codes 0/1/2, usage on bad arguments, the
 * `--json` documents, `--dry-run`, settings from `SESSIONKV_*`, tables that
 * fit 80 columns, and a progress line only on a terminal.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { SessionStore } from "../mod.ts";
import { withTempDir } from "./_helpers.ts";
import { ageAll, cleanEnv, DAY_MS, exists, REPO, runCli } from "./fixtures/cleanup_util.ts";

const OLD = 30 * DAY_MS;

/** Makes idle sessions (30 days old) and returns their count. */
async function makeSessions(root: string, spec: Record<string, string[]>): Promise<number> {
  let n = 0;
  {
    await using store = new SessionStore({ root });
    for (const [bot, sessions] of Object.entries(spec)) {
      for (const s of sessions) {
        using kv = await store.openKv(bot, s);
        await kv.set(["k"], "x".repeat(100 * ++n));
      }
    }
  }
  await ageAll(root, OLD);
  return n;
}

function assertFits80(text: string) {
  for (const line of text.split("\n")) {
    ok([...line].length <= 80, `line longer than 80 columns: ${JSON.stringify(line)}`);
  }
}

Deno.test("cli: sessions prints a table that fits 80 columns, and --bot filters it", async () => {
  await withTempDir(async (root) => {
    await makeSessions(root, {
      "support-bot": ["user-1", "user-2"],
      "a-very-long-bot-name-that-will-not-fit": ["a-very-long-session-id-that-will-not-fit-either"],
      "evil\x1b[2J": ["line\nbreak"],
    });
    const all = await runCli(["sessions", "--root", root]);
    equal(all.code, 0, all.stderr);
    assertFits80(all.stdout);
    const lines = all.stdout.trimEnd().split("\n");
    match(lines[0]!, /^bot\s+session\s+size\s+last activity \(UTC\)\s+open$/);
    equal(lines.length, 6);
    match(lines.at(-1)!, /^4 sessions, \d+\.\d KiB, 0 open$/);
    ok(lines.some((l) => /a-very-long-b…\s+a-very-long-session-i…/.test(l)), "long ids are cut");
    ok(!all.stdout.includes("\x1b"), "control characters never reach the terminal");
    ok(all.stdout.includes("evil\\x1b[2J") && all.stdout.includes("line\\nbreak"));
    match(all.stdout, /support-bot\s+user-1\s+\d+\.\d KiB\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+no/);

    const one = await runCli(["sessions", "--root", root, "--bot", "support-bot"]);
    equal(one.code, 0);
    equal(one.stdout.trimEnd().split("\n").length, 4);
    match(one.stdout.trimEnd().split("\n").at(-1)!, /^2 sessions, \d+\.\d KiB, 0 open$/);
  });
});

Deno.test("cli: sessions --json prints one document and marks sessions open in another process", async () => {
  await withTempDir(async (root) => {
    await makeSessions(root, { bot: ["idle", "busy"] });
    await using store = new SessionStore({ root });
    using _busy = await store.openKv("bot", "busy"); // this process has it open
    await _busy.get(["k"]);
    const run = await runCli(["sessions", "--root", root, "--json"]);
    equal(run.code, 0, run.stderr);
    const doc = JSON.parse(run.stdout);
    deepEqual(Object.keys(doc), ["root", "sessions", "count", "totalBytes", "open"]);
    equal(doc.root, root);
    equal(doc.count, 2);
    equal(doc.open, 1);
    const byId = Object.fromEntries(
      doc.sessions.map((s: { sessionId: string }) => [s.sessionId, s]),
    );
    deepEqual(Object.keys(byId.idle).sort(), [
      "botId",
      "lastActivity",
      "open",
      "path",
      "sessionId",
      "sizeBytes",
    ]);
    equal(byId.idle.open, false);
    equal(byId.busy.open, true);
    equal(byId.idle.botId, "bot");
    equal(byId.idle.path, join(root, "bot", "idle"));
    ok(Date.now() - Date.parse(byId.idle.lastActivity) > 29 * DAY_MS);
    equal(doc.totalBytes, byId.idle.sizeBytes + byId.busy.sizeBytes);

    const empty = await runCli(["sessions", "--root", root, "--bot", "nobody", "--json"]);
    deepEqual(JSON.parse(empty.stdout), { root, sessions: [], count: 0, totalBytes: 0, open: 0 });
  });
});

Deno.test("cli: cleanup --dry-run --json deletes nothing and predicts the real run", async () => {
  await withTempDir(async (root) => {
    const n = await makeSessions(root, { a: ["1", "2"], b: ["1", "2", "3"] });
    const dry = await runCli(["cleanup", "--root", root, "--dry-run", "--json"]);
    equal(dry.code, 0, dry.stderr);
    const report = JSON.parse(dry.stdout);
    deepEqual(Object.keys(report), [
      "root",
      "olderThanMs",
      "scanned",
      "deleted",
      "skippedInUse",
      "bytesFreed",
      "cutoff",
      "dryRun",
      "errors",
      "elapsedMs",
    ]);
    equal(report.root, root);
    equal(report.olderThanMs, 7 * DAY_MS);
    equal(report.dryRun, true);
    equal(report.scanned, n);
    equal(report.deleted, n);
    deepEqual(report.errors, []);
    ok(Math.abs(Date.parse(report.cutoff) - (Date.now() - 7 * DAY_MS)) < 60_000);
    ok(await exists(join(root, "a", "1")), "nothing deleted");

    const real = await runCli(["cleanup", "--root", root, "--json"]);
    equal(real.code, 0, real.stderr);
    const done = JSON.parse(real.stdout);
    equal(done.dryRun, false);
    equal(done.deleted, report.deleted);
    equal(done.bytesFreed, report.bytesFreed);
    ok(!(await exists(join(root, "a"))), "sessions and emptied bot directories are gone");
  });
});

Deno.test("cli: cleanup prints a summary table and --older-than picks the cutoff", async () => {
  await withTempDir(async (root) => {
    await makeSessions(root, { bot: ["1", "2"] });
    const keep = await runCli(["cleanup", "--root", root, "--older-than", "31d"]);
    equal(keep.code, 0, keep.stderr);
    assertFits80(keep.stdout);
    match(keep.stdout, /idle for 31d/);
    match(keep.stdout, /^ {2}scanned\s+2$/m);
    match(keep.stdout, /^ {2}deleted\s+0$/m);
    equal(keep.stderr, "", "no progress line when stderr is not a terminal");

    const dry = await runCli(["cleanup", "--root", root, "--older-than", "1d12h", "--dry-run"]);
    match(dry.stdout, /^Dry run: nothing was deleted\./);
    match(dry.stdout, /idle for 1d 12h/);
    match(dry.stdout, /^ {2}would delete\s+2$/m);

    const run = await runCli(["cleanup", "--root", root, "--older-than", "90m"]);
    equal(run.code, 0);
    match(run.stdout, /^ {2}deleted\s+2$/m);
    match(run.stdout, /^ {2}freed\s+\d+\.\d KiB$/m);
  });
});

Deno.test("cli: settings come from SESSIONKV_* when no option is given", async () => {
  await withTempDir(async (root) => {
    await makeSessions(root, { bot: ["1"] });
    const env = { SESSIONKV_ROOT: root, SESSIONKV_CLEANUP_OLDER_THAN_DAYS: "40" };
    const kept = await runCli(["cleanup", "--json"], { env });
    equal(kept.code, 0, kept.stderr);
    const report = JSON.parse(kept.stdout);
    equal(report.root, root);
    equal(report.olderThanMs, 40 * DAY_MS);
    equal(report.deleted, 0);
    const listed = await runCli(["sessions", "--json"], {
      env: { ...env, SESSIONKV_WAL: "false", SESSIONKV_BUSY_TIMEOUT_MS: "100" },
    });
    equal(JSON.parse(listed.stdout).count, 1);
    const overridden = await runCli(["cleanup", "--older-than", "1d", "--json"], { env });
    equal(JSON.parse(overridden.stdout).deleted, 1, "--older-than wins over the variable");
  });
});

Deno.test("cli: a relative --root is taken from where deno task was started (INIT_CWD)", async () => {
  await withTempDir(async (dir) => {
    await makeSessions(join(dir, "sessions"), { bot: ["1"] });
    const run = await runCli(["sessions", "--root", "sessions", "--json"], {
      env: { INIT_CWD: dir },
    });
    equal(run.code, 0, run.stderr);
    equal(JSON.parse(run.stdout).count, 1);
  });
});

Deno.test("cli: a root that does not exist is not an error", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "missing");
    const run = await runCli(["cleanup", "--root", root, "--json"]);
    equal(run.code, 0);
    equal(JSON.parse(run.stdout).scanned, 0);
    match(run.stderr, /does not exist/);
    ok(!(await exists(root)), "and it is not created");
  });
});

Deno.test("cli: exit code 1 when a directory cannot be read, with the errors listed", async () => {
  await withTempDir(async (root) => {
    await makeSessions(root, { good: ["1"], bad: ["1"] });
    const bad = join(root, "bad");
    // Tests run as root, where file modes do not stop reads: deny with Deno's permissions.
    const flags = ["--allow-read", "--allow-write", "--allow-env", `--deny-read=${bad}`];
    const human = await runCli(["cleanup", "--root", root, "--dry-run"], { flags });
    equal(human.code, 1);
    match(human.stdout, /^ {2}errors\s+1$/m);
    match(human.stderr, new RegExp(`^error: ${bad}: `, "m"));
    const json = await runCli(["cleanup", "--root", root, "--json"], { flags });
    equal(json.code, 1);
    const report = JSON.parse(json.stdout);
    equal(report.deleted, 1);
    deepEqual(report.errors.map((e: { path: string }) => e.path), [bad]);
  });
});

Deno.test("cli: exit code 2 and the usage on stderr for bad arguments or settings", async () => {
  await withTempDir(async (root) => {
    const cases: { args: string[]; env?: Record<string, string>; says: RegExp }[] = [
      { args: [], says: /Missing command/ },
      { args: ["purge"], says: /Unknown command "purge"/ },
      { args: ["cleanup", "--root", root, "--bogus"], says: /Unknown option '--bogus'/ },
      { args: ["cleanup", "--root", root, "extra"], says: /positional argument/ },
      { args: ["cleanup", "--root", root, "--older-than", "7"], says: /--older-than.*"7"/ },
      { args: ["cleanup", "--root", root, "--older-than", "soon"], says: /"soon"/ },
      { args: ["cleanup", "--root", root, "--older-than"], says: /argument missing/ },
      { args: ["cleanup", "--root", ""], says: /--root cannot be empty/ },
      { args: ["sessions", "--root", root, "--bot", ""], says: /--bot cannot be empty/ },
      { args: ["sessions", "--root", root, "--dry-run"], says: /Unknown option '--dry-run'/ },
      {
        args: ["cleanup", "--root", root],
        env: { SESSIONKV_CLEANUP_OLDER_THAN_DAYS: "a week" },
        says: /SESSIONKV_CLEANUP_OLDER_THAN_DAYS must be a number: received "a week"/,
      },
      {
        args: ["sessions", "--root", root],
        env: { SESSIONKV_WAL: "maybe" },
        says: /SESSIONKV_WAL must be true or false/,
      },
      {
        args: ["cleanup", "--root", root],
        env: { SESSIONKV_BUSY_TIMEOUT_MS: "-5" },
        says: /SESSIONKV_BUSY_TIMEOUT_MS must be positive/,
      },
    ];
    for (const c of cases) {
      const run = await runCli(c.args, c.env ? { env: c.env } : {});
      equal(run.code, 2, `${c.args.join(" ")}: ${run.stderr}`);
      equal(run.stdout, "", `${c.args.join(" ")} prints nothing on stdout`);
      match(run.stderr, c.says);
      match(run.stderr, /^Usage:$/m);
    }
  });
});

Deno.test("cli: --help prints the usage on stdout, fitting 80 columns", async () => {
  for (const args of [["--help"], ["cleanup", "--help"], ["sessions", "-h"]]) {
    const run = await runCli(args);
    equal(run.code, 0);
    match(run.stdout, /^Usage:\n {2}deno task cleanup/);
    match(run.stdout, /Exit status: 0 success, 1 /);
    assertFits80(run.stdout);
    equal(run.stderr, "");
  }
});

Deno.test("cli: deno task cleanup / sessions run with the permissions the tasks grant", async () => {
  await withTempDir(async (root) => {
    await makeSessions(root, { bot: ["1"] });
    const task = async (name: string, ...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "--quiet", name, "--root", root, "--json", ...args],
        cwd: REPO,
        env: cleanEnv(),
        clearEnv: true,
      }).output();
      return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
    };
    const listed = await task("sessions");
    equal(listed.code, 0);
    equal(JSON.parse(listed.stdout).count, 1);
    const swept = await task("cleanup", "--older-than", "1d");
    equal(swept.code, 0);
    equal(JSON.parse(swept.stdout).deleted, 1);
  });
});

Deno.test("cli: a terminal gets a progress line redrawn with \\r and erased at the end", async () => {
  await withTempDir(async (root) => {
    await makeSessions(root, { bot: Array.from({ length: 30 }, (_, i) => `s${i}`) });
    // `script` gives the CLI a pseudo-terminal for stdin/stdout/stderr.
    const cli = `${Deno.execPath()} run -A --quiet ${join(REPO, "cli.ts")} cleanup --root ${root}`;
    let out;
    try {
      out = await new Deno.Command("script", {
        args: ["-qec", cli, "/dev/null"],
        env: cleanEnv(),
        clearEnv: true,
        stdin: "null",
      }).output();
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      console.log("  skipped: the `script` command (util-linux) is not installed");
      return;
    }
    // "\x1b[K" (erase to the end of the line) shown as <EL>.
    const text = new TextDecoder().decode(out.stdout).replaceAll("\x1b[K", "<EL>");
    equal(out.code, 0, text);
    match(text, /\rCleaning .*: \d+ scanned, \d+ deleted, \d+ in use<EL>/);
    ok(text.includes("\r<EL>"), "the progress line is erased");
    match(text, /deleted\s+30/);
  });
});
