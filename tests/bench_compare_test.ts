/**
 * `deno task bench:compare` pieces that can be checked quickly: the report
 * judges targets from the numbers it is given (and says "not met" when they
 * miss), the chart is well-formed SVG, and the two-process writer runs as a
 * child and reports its writes.
 */
import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { renderMarkdown, renderSvg, type Results } from "../bench/_report.ts";
import type { WriteResult } from "../bench/_compare_worker.ts";
import { withTempDir } from "./_helpers.ts";

const MIB = 2 ** 20;

function results(getVsDenoKv: number): Results {
  const ops = (node: number, denokv: number, raw: number) => ({
    node,
    ffi: node,
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
          values: ops(getVsDenoKv * 10e3, 10e3, 100e3),
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
      oneSession: { opsPerSecond: 20e3, maxStallMs: 150 },
      shared: { opsPerSecond: 30e3, maxStallMs: 20 },
    },
    cleanup: { count: 10_000, seconds: 0.25, dirsPerSecond: 40e3 },
    memory: {
      idleCount: 200,
      touchCount: 1000,
      idle: { node: 120 * 1024, ffi: 170 * 1024 },
      touch: {
        node: {
          startRssBytes: 50 * MIB,
          peakRssBytes: 90 * MIB,
          finalRssBytes: 90 * MIB,
          collectedRssBytes: 85 * MIB,
          openSessions: 256,
        },
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
  equal(verdict(missed, "idle open session"), "partly");
  equal(verdict(missed, "cleanup scan"), "**met**");
  equal(verdict(renderMarkdown(results(12)), "get ≥ 10× Deno KV"), "**met**");
  match(missed, /Test CPU, 2 cores/);
  match(missed, /\(results\.svg\)/);
});

Deno.test("results.svg draws one bar per subject and workload", () => {
  const svg = renderSvg(results(4));
  match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  ok(svg.trimEnd().endsWith("</svg>"));
  // 6 workloads × 4 subjects besides Deno KV, plus the 4 legend swatches.
  equal(svg.match(/<rect /g)!.length, 1 + 6 * 4 + 4);
});

Deno.test("the two-process writer runs as a child and reports its writes", async () => {
  await withTempDir(async (root) => {
    const options = { path: root, proc: 0, sessions: 2, startAt: Date.now(), durationMs: 200 };
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
});
