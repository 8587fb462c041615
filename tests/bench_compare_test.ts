/**
 * `deno task bench:compare` pieces that can be checked quickly: the report
 * judges targets from the numbers it is given (and says "not met" when they
 * miss, and when only exclusive locking meets them), shows every subject,
 * the chart is well-formed SVG, and the two-process writer runs as a child
 * and reports its writes, in either locking mode.
 */
import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { renderMarkdown, renderSvg, type Results } from "../bench/_report.ts";
import type { WriteOptions, WriteResult } from "../bench/_compare_worker.ts";
import { withTempDir } from "./_helpers.ts";

const MIB = 2 ** 20;

/** Made-up results: SessionKv gets at `getVsDenoKv` × Deno KV, or `exclusiveGet` × with exclusive locking. */
function results(getVsDenoKv: number, exclusiveGet = getVsDenoKv): Results {
  const ops = (node: number, denokv: number, raw: number, exclusive = node) => ({
    node,
    ffi: node,
    exclusive,
    denokv,
    raw,
    shared: raw,
  });
  return {
    mode: "quick",
    date: "2026-01-02T03:04:05.000Z",
    machine: { cpu: "Test CPU", cores: 2, loadAverage: [1, 1, 1], memoryGiB: 8, os: "linux" },
    versions: {
      deno: "2.9.6",
      v8: "15",
      typescript: "6",
      node: "3.53.2",
      ffi: { sqlite: "3.40.1", library: "libsqlite3.so.0" },
    },
    sessions: 100,
    rounds: 3,
    budgetMs: 100,
    workloads: [1, 100].flatMap((sessions) =>
      [
        {
          op: "set",
          sessions,
          name: `set, ${sessions}`,
          unit: "ops/s",
          values: ops(30e3, 3e3, 40e3),
        },
        {
          op: "get",
          sessions,
          name: `get, ${sessions}`,
          unit: "ops/s",
          values: ops(getVsDenoKv * 10e3, 10e3, 100e3, exclusiveGet * 10e3),
        },
        {
          op: "list",
          sessions,
          name: `list, ${sessions}`,
          unit: "entries/s",
          values: ops(500e3, 200e3, 800e3),
        },
      ] as Results["workloads"]
    ),
    twoProcesses: {
      durationMs: 2000,
      rounds: 1,
      single: { opsPerSecond: 21e3, maxStallMs: 10 },
      sessions: { opsPerSecond: 40e3, maxStallMs: 12 },
      exclusive: { opsPerSecond: 45e3, maxStallMs: 8 },
      oneSession: { opsPerSecond: 20e3, maxStallMs: 150 },
      shared: { opsPerSecond: 30e3, maxStallMs: 20 },
    },
    cleanup: { count: 10_000, seconds: 0.25, dirsPerSecond: 40e3 },
    memory: {
      idleCount: 200,
      touchCount: 1000,
      idle: { node: 120 * 1024, ffi: 170 * 1024, exclusive: 110 * 1024 },
      touch: {
        node: {
          startRssBytes: 50 * MIB,
          peakRssBytes: 90 * MIB,
          finalRssBytes: 90 * MIB,
          collectedRssBytes: 85 * MIB,
          openSessions: 256,
          heapTotalBytes: 44 * MIB,
          youngGenerationBytes: 32 * MIB,
          finalRss: { anonBytes: 50 * MIB, fileBytes: 40 * MIB },
        },
      },
      touchSmallYoung: {
        startRssBytes: 50 * MIB,
        peakRssBytes: 70 * MIB,
        finalRssBytes: 70 * MIB,
        collectedRssBytes: 68 * MIB,
        openSessions: 256,
        heapTotalBytes: 14 * MIB,
        youngGenerationBytes: 2 * MIB,
      },
    },
    seconds: 60,
  };
}

/** The verdict cell of the targets row starting with `name`. */
function verdict(markdown: string, name: string): string {
  const row = markdown.split("\n").find((line) => line.startsWith(`| ${name}`));
  ok(row, `no row "${name}"`);
  return row.split("|").at(-2)!.trim();
}

Deno.test("RESULTS.md judges each target from the measured ratios", () => {
  const missed = renderMarkdown(results(4));
  equal(verdict(missed, "set ≥ 5× Deno KV"), "**met**");
  equal(verdict(missed, "get ≥ 10× Deno KV"), "not met");
  equal(verdict(missed, "list ≥ 2× Deno KV"), "**met**");
  equal(verdict(missed, "2 processes, own sessions"), "**met**");
  equal(verdict(missed, "idle open session"), "partly by default; **met** with exclusive locking");
  equal(verdict(missed, "cleanup scan"), "**met**");
  equal(verdict(renderMarkdown(results(12)), "get ≥ 10× Deno KV"), "**met**");
  match(missed, /Test CPU, 2 cores/);
  match(missed, /\(results\.svg\)/);
});

Deno.test("RESULTS.md says when only exclusive locking meets a target", () => {
  const markdown = renderMarkdown(results(4, 12));
  equal(
    verdict(markdown, "get ≥ 10× Deno KV"),
    "not met by default; **met** with exclusive locking",
  );
  equal(
    verdict(renderMarkdown(results(12, 4)), "get ≥ 10× Deno KV"),
    "**met** by default; not met with exclusive locking",
  );
  equal(verdict(markdown, "set ≥ 5× Deno KV"), "**met**");
  match(markdown, /its gets run at 12\.0× Deno KV with 1 session and 12\.0× with 100 sessions\./);
});

Deno.test("RESULTS.md shows the exclusive subject in every table", () => {
  const lines = renderMarkdown(results(4)).split("\n");
  const name = "SessionKv (node, exclusive)";
  const row = (start: string) => {
    const found = lines.find((line) => line.startsWith(start));
    ok(found, `no line "${start}"`);
    return found;
  };
  // Operations, ratios ÷ Deno KV and ÷ raw, memory and targets.
  ok(row("| workload | unit |").includes(`| ${name} |`));
  ok(row("| workload | SessionKv (node) ÷ Deno KV").includes(`| ${name} ÷ Deno KV |`));
  ok(row("| workload | SessionKv (node) ÷ Deno KV").includes(`| ${name} ÷ raw |`));
  match(row(`| ${name} |`), /\| 110 KiB \|/);
  ok(row("| target |").includes(`| ${name} | verdict |`));
  match(
    row("| SessionKv (exclusive), each process on its own 10 sessions"),
    /\| 45\.0k \| 8\.0 ms \|/,
  );
  match(row("| 2 processes, own sessions"), /2\.25×, longest write 8\.0 ms ✓/);
  ok(row(`- **${name}**`).includes(`lockingMode: "exclusive"`));
  // Every workload row has a cell per subject.
  equal(row("| get, 1 |").split("|").length - 2, 2 + 6);
});

Deno.test("RESULTS.md splits the touching peak into V8's heap and the rest, and shows the small-young-generation run", () => {
  const lines = renderMarkdown(results(4)).split("\n");
  const node = lines.find((line) => line.startsWith("| SessionKv (node) | 120 KiB |"));
  ok(node, "no memory row for node");
  match(
    node,
    /\| 90\.0 MiB \| 50\.0 MiB \/ 40\.0 MiB \| 44\.0 MiB \(32\.0 MiB\) \| 85\.0 MiB \| 256 \|$/,
  );
  const small = lines.find((line) => line.startsWith("| SessionKv (node), `--v8-flags"));
  ok(small, "no small-young-generation row");
  ok(small.startsWith("| SessionKv (node), `--v8-flags=--max-semi-space-size=1` | — | 50.0 MiB |"));
  match(small, /\| 70\.0 MiB \| 70\.0 MiB \| — \| 14\.0 MiB \(2\.0 MiB\) \|/);
  // The target is judged on the default run only.
  ok(
    lines.find((line) => line.startsWith("| 1,000 sessions touched"))?.includes("peak 90.0 MiB ✓"),
  );
});

Deno.test("results.svg draws one bar per subject and workload", () => {
  const svg = renderSvg(results(4));
  match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  ok(svg.trimEnd().endsWith("</svg>"));
  // 6 workloads × 5 subjects besides Deno KV, plus the 5 legend swatches.
  equal(svg.match(/<rect /g)!.length, 1 + 6 * 5 + 5);
  match(svg, />SessionKv \(node, exclusive\)</);
  // The legend stays inside the chart.
  const width = Number(svg.match(/width="(\d+)"/)![1]);
  for (const [, x] of svg.matchAll(/<text x="([\d.]+)" y="\d+">[^<]+<\/text>/g)) {
    ok(Number(x) < width - 100, `legend text at x=${x}`);
  }
});

Deno.test("the two-process writer runs as a child and reports its writes", async () => {
  for (const lockingMode of [undefined, "exclusive"] as const) await writeSessions(lockingMode);
});

/** Runs `write-sessions` for 200 ms in a child, in `lockingMode` (default: normal). */
async function writeSessions(lockingMode: "exclusive" | undefined): Promise<void> {
  await withTempDir(async (root) => {
    const options: WriteOptions = {
      path: root,
      proc: 0,
      sessions: 2,
      startAt: Date.now(),
      durationMs: 200,
      ...(lockingMode === undefined ? {} : { lockingMode }),
    };
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(import.meta.dirname!, "../bench/_compare_worker.ts"),
        "write-sessions",
        JSON.stringify(options),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    ok(out.success);
    const result: WriteResult = JSON.parse(new TextDecoder().decode(out.stdout));
    ok(result.ops > 0, `${result.ops} writes`);
    ok(result.maxStallMs > 0);
  });
}
