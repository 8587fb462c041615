/**
 * The cleanup CLI on many idle sessions: wall time, peak memory, sessions per
 * second. The session directories are made without SQLite (each a copy of
 * one real empty session's kv.sqlite3 plus its open.lock, 30 days old), then
 * `cli.ts` runs as a child process under `/usr/bin/time -v` for its peak RSS.
 *
 * Full run (prints a table; 100,000 sessions by default):
 *
 *   deno run -A bench/cleanup_bench.ts [--count 100000] [--keep DIR]
 *
 * Under `deno task bench` a smaller `Deno.bench` (2,000 sessions, one timed
 * sweep) keeps the suite quick.
 *
 * The sweep streams (walkSessions is an async generator): peak RSS should
 * stay flat as the count grows; the full run also sweeps a tenth of the count
 * to show it.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { makeIdleSessions } from "./_idle_sessions.ts";

const REPO = new URL("../", import.meta.url).pathname;

interface Measured {
  code: number;
  wallMs: number;
  peakRssKiB: number | undefined;
  report: Record<string, unknown> | undefined;
}

/** Runs the CLI as a child, under /usr/bin/time -v when it exists. */
async function runCli(args: string[], { keepStdout = true } = {}): Promise<Measured> {
  const deno = [
    Deno.execPath(),
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    join(REPO, "cli.ts"),
    ...args,
  ];
  let timed = true;
  try {
    await Deno.stat("/usr/bin/time");
  } catch {
    timed = false;
  }
  const [cmd, ...rest] = timed ? ["/usr/bin/time", "-v", ...deno] : deno;
  const started = performance.now();
  const out = await new Deno.Command(cmd!, {
    args: rest,
    cwd: REPO,
    stdout: keepStdout ? "piped" : "null",
    stderr: "piped",
  }).output();
  const wallMs = performance.now() - started;
  const stderr = new TextDecoder().decode(out.stderr);
  const rss = stderr.match(/Maximum resident set size \(kbytes\): (\d+)/);
  const stdout = keepStdout ? new TextDecoder().decode(out.stdout) : "";
  return {
    code: out.code,
    wallMs,
    peakRssKiB: rss ? Number(rss[1]) : undefined,
    report: stdout ? JSON.parse(stdout) : undefined,
  };
}

const mib = (kib: number | undefined) =>
  kib === undefined ? "n/a" : `${(kib / 1024).toFixed(1)} MiB`;

async function fullRun(count: number, keep: string | undefined): Promise<void> {
  if ((await runCli(["--help"], { keepStdout: false })).peakRssKiB === undefined) {
    console.warn("note: /usr/bin/time not found (apt-get install time): no peak RSS");
  }
  const rows: string[][] = [];
  for (const n of [Math.max(1, Math.floor(count / 10)), count]) {
    const root = keep ?? await Deno.makeTempDir({ prefix: "sessionkv-bench-" });
    try {
      const genMs = await makeIdleSessions(root, n);
      console.error(`made ${n} idle sessions in ${(genMs / 1000).toFixed(1)} s`);
      const list = await runCli(["sessions", "--root", root, "--json"], { keepStdout: false });
      const dry = await runCli(["cleanup", "--root", root, "--dry-run", "--json"]);
      const real = await runCli(["cleanup", "--root", root, "--json"]);
      if (real.code !== 0 || real.report?.deleted !== n || dry.report?.deleted !== n) {
        throw new Error(`Unexpected result: ${JSON.stringify({ dry, real })}`);
      }
      for (
        const [what, m] of [["sessions --json", list], ["cleanup --dry-run", dry], [
          "cleanup",
          real,
        ]] as const
      ) {
        rows.push([
          String(n),
          what,
          `${(m.wallMs / 1000).toFixed(1)} s`,
          mib(m.peakRssKiB),
          `${Math.round(n / (m.wallMs / 1000))}`,
        ]);
      }
    } finally {
      if (keep === undefined) await Deno.remove(root, { recursive: true });
    }
  }
  const header = ["sessions", "command", "wall", "peak RSS", "sessions/s"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) {
    console.log(r.map((c, i) => i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join("  "));
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { count: { type: "string", default: "100000" }, keep: { type: "string" } },
  });
  await fullRun(Number(values.count), values.keep);
} else {
  const COUNT = 2000;
  let root = "";
  Deno.bench({
    name: `cleanup CLI sweeps ${COUNT} idle sessions (child process)`,
    group: "cleanup",
    n: 1,
    warmup: 0,
    async fn(b) {
      root = await Deno.makeTempDir({ prefix: "sessionkv-bench-" });
      try {
        await makeIdleSessions(root, COUNT);
        b.start();
        const run = await runCli(["cleanup", "--root", root, "--json"]);
        b.end();
        if (run.report?.deleted !== COUNT) throw new Error(`Deleted ${run.report?.deleted}`);
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    },
  });
}
