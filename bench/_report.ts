/**
 * Private to `bench/compare.ts`: turns its measurements into
 * `bench/RESULTS.md` (tables, targets) and `bench/results.svg` (ratios
 * against Deno KV, hand-written SVG).
 *
 * @module
 */
import type { TouchResult } from "./_compare_worker.ts";
import { KEYS, SUBJECT_NAMES, type SubjectId } from "./_subjects.ts";

/** One workload's throughput on each subject that ran it. */
export interface WorkloadResult {
  /** The operation: `set`, `get`, `getMany`, `list`, `atomic`, `cold` or `reopen`. */
  op: string;
  /** Sessions taken round-robin, for the operations. */
  sessions?: number;
  /** Row label. */
  name: string;
  /** What `values` count. */
  unit: "ops/s" | "entries/s";
  /** Per second, by subject. */
  values: Partial<Record<SubjectId, number>>;
}

/** Two processes writing at once. */
interface TwoProcessMode {
  /** Writes per second, both processes together. */
  opsPerSecond: number;
  /** The longest single write in either process, in ms. */
  maxStallMs: number;
}

/** Everything one run measured. */
export interface Results {
  mode: "full" | "quick";
  /** ISO start time. */
  date: string;
  machine: {
    cpu: string;
    cores: number;
    loadAverage: number[];
    memoryGiB: number;
    os: string;
  };
  versions: {
    deno: string;
    v8: string;
    typescript: string;
    /** SQLite inside `node:sqlite`. */
    node: string;
    /** The FFI driver's library, or why it was skipped. */
    ffi: { sqlite: string; library: string } | { skipped: string };
  };
  /** Sessions of the round-robin workloads. */
  sessions: number;
  rounds: number;
  budgetMs: number;
  workloads: WorkloadResult[];
  twoProcesses: {
    durationMs: number;
    rounds: number;
    /** SessionKv, one process alone on its own sessions. */
    single: TwoProcessMode;
    /** SessionKv, each process on its own sessions. */
    sessions: TwoProcessMode;
    /** SessionKv, both processes in one session file: the same work, one file. */
    oneSession: TwoProcessMode;
    /** Raw statements, both processes in one shared SQLite file. */
    shared: TwoProcessMode;
  };
  cleanup: { count: number; seconds: number; dirsPerSecond: number };
  memory: {
    idleCount: number;
    touchCount: number;
    /** Resident bytes per open idle session, by driver. */
    idle: Partial<Record<"node" | "ffi", number>>;
    touch: Partial<Record<"node" | "ffi", TouchResult>>;
  };
  /** Wall time of the whole run. */
  seconds: number;
}

const SUBJECTS: SubjectId[] = ["node", "ffi", "denokv", "raw", "shared"];
const DRIVERS = ["node", "ffi"] as const;
const MIB = 2 ** 20;

/** 1234567 → "1.23M", 12345 → "12.3k". */
function count(n: number | undefined): string {
  if (n === undefined) return "—";
  if (n >= 1e6) return `${(n / 1e6).toPrecision(3)}M`;
  if (n >= 1e3) return `${(n / 1e3).toPrecision(3)}k`;
  return n.toPrecision(3);
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : a / b;
}

function times(r: number | undefined): string {
  if (r === undefined) return "—";
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

function table(header: string[], rows: string[][]): string {
  const align = header.map((_, i) => (i === 0 ? "---" : "--:"));
  return [header, align, ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
}

/** A target checked on each driver and configuration it applies to. */
interface Target {
  name: string;
  /** One cell per driver: the values measured, each marked ✓ or ✗. */
  cells: Record<"node" | "ffi", string>;
  /** Every check, passed or not. */
  checks: boolean[];
}

function targets(results: Results): Target[] {
  const out: Target[] = [];
  const find = (op: string, sessions: number) =>
    results.workloads.find((w) => w.op === op && w.sessions === sessions);
  const mark = (ok: boolean) => (ok ? "✓" : "✗");
  const configs = [1, results.sessions];
  const opTarget = (
    name: string,
    op: string,
    against: SubjectId,
    measure: (mine: number, other: number) => number,
    ok: (r: number) => boolean,
  ) => {
    const target: Target = { name, cells: { node: "", ffi: "" }, checks: [] };
    for (const driver of DRIVERS) {
      const parts: string[] = [];
      for (const sessions of configs) {
        const w = find(op, sessions);
        const mine = w?.values[driver];
        const other = w?.values[against];
        if (mine === undefined || other === undefined) continue;
        const r = measure(mine, other);
        target.checks.push(ok(r));
        parts.push(`${times(r)} ${mark(ok(r))} (${sessions === 1 ? "1" : sessions} s.)`);
      }
      target.cells[driver] = parts.join(", ") || "—";
    }
    out.push(target);
  };
  const faster = (mine: number, other: number) => mine / other;
  const slower = (mine: number, other: number) => other / mine;
  opTarget("set ≥ 5× Deno KV", "set", "denokv", faster, (r) => r >= 5);
  opTarget("get ≥ 10× Deno KV", "get", "denokv", faster, (r) => r >= 10);
  opTarget("set within 1.5× of raw (raw ÷ SessionKv)", "set", "raw", slower, (r) => r <= 1.5);
  opTarget("get within 1.5× of raw (raw ÷ SessionKv)", "get", "raw", slower, (r) => r <= 1.5);
  opTarget("list ≥ 2× Deno KV entries/s", "list", "denokv", faster, (r) => r >= 2);

  const two = results.twoProcesses;
  // "The same work on one shared file": SessionKv in both.
  const twoRatio = two.sessions.opsPerSecond / two.oneSession.opsPerSecond;
  const twoOk = twoRatio >= 1.6 && two.sessions.maxStallMs <= 50;
  out.push({
    name: "2 processes, own sessions ≥ 1.6× one shared file, no stall > 50 ms",
    cells: {
      node: `${times(twoRatio)}, longest write ${two.sessions.maxStallMs.toFixed(1)} ms ${
        mark(twoOk)
      }`,
      ffi: "—",
    },
    checks: [twoOk],
  });

  const idle: Target = {
    name: "idle open session ≤ 150 KiB resident",
    cells: { node: "—", ffi: "—" },
    checks: [],
  };
  const touch: Target = {
    name: `${results.memory.touchCount.toLocaleString("en-US")} sessions touched, ` +
      "maxOpenSessions 256: < 100 MiB resident",
    cells: { node: "—", ffi: "—" },
    checks: [],
  };
  for (const driver of DRIVERS) {
    const bytes = results.memory.idle[driver];
    if (bytes !== undefined) {
      const ok = bytes <= 150 * 1024;
      idle.checks.push(ok);
      idle.cells[driver] = `${(bytes / 1024).toFixed(0)} KiB ${mark(ok)}`;
    }
    const t = results.memory.touch[driver];
    if (t !== undefined) {
      const ok = t.peakRssBytes < 100 * MIB;
      touch.checks.push(ok);
      touch.cells[driver] = `peak ${(t.peakRssBytes / MIB).toFixed(1)} MiB ${mark(ok)}`;
    }
  }
  out.push(idle, touch);

  const scanOk = results.cleanup.dirsPerSecond >= 20_000;
  out.push({
    name: "cleanup scan ≥ 20,000 session directories/s",
    cells: { node: `${count(results.cleanup.dirsPerSecond)}/s ${mark(scanOk)}`, ffi: "—" },
    checks: [scanOk],
  });
  return out;
}

function verdict(checks: boolean[]): string {
  if (checks.length === 0) return "not measured";
  if (checks.every((c) => c)) return "**met**";
  return checks.some((c) => c) ? "partly" : "not met";
}

/**
 * Renders `bench/RESULTS.md`.
 *
 * @param results One run's measurements.
 * @returns The Markdown text.
 */
export function renderMarkdown(results: Results): string {
  const { machine, versions } = results;
  const ffi = "skipped" in versions.ffi
    ? `skipped: ${versions.ffi.skipped}`
    : `${versions.ffi.sqlite} (\`${versions.ffi.library}\`)`;
  const subjects = SUBJECTS.filter((id) => results.workloads.some((w) => id in w.values));
  const drivers = DRIVERS.filter((d) => subjects.includes(d));
  const ops = table(
    ["workload", "unit", ...subjects.map((id) => SUBJECT_NAMES[id])],
    results.workloads.map((w) => [w.name, w.unit, ...subjects.map((id) => count(w.values[id]))]),
  );
  const others = subjects.filter((id) => id !== "denokv");
  const ratios = table(
    [
      "workload",
      ...others.map((id) => `${SUBJECT_NAMES[id]} ÷ Deno KV`),
      ...drivers.map((d) => `${SUBJECT_NAMES[d]} ÷ raw`),
    ],
    results.workloads.map((w) => [
      w.name,
      ...others.map((id) => times(ratio(w.values[id], w.values.denokv))),
      ...drivers.map((d) => times(ratio(w.values[d], w.values.raw))),
    ]),
  );
  const two = results.twoProcesses;
  const twoRow = (label: string, mode: TwoProcessMode) => [
    label,
    count(mode.opsPerSecond),
    `${mode.maxStallMs.toFixed(1)} ms`,
  ];
  const twoTable = table(["processes writing", "writes/s (all)", "longest write"], [
    twoRow("1 process alone: SessionKv, its own 10 sessions", two.single),
    twoRow("SessionKv, each process on its own 10 sessions", two.sessions),
    twoRow("SessionKv, both in one session file (session id as first key part)", two.oneSession),
    twoRow("raw statements, both in one shared file keyed by (session, key)", two.shared),
  ]);
  const memoryRows = drivers.map((d) => {
    const idle = results.memory.idle[d];
    const touch = results.memory.touch[d];
    return [
      SUBJECT_NAMES[d],
      idle === undefined ? "—" : `${(idle / 1024).toFixed(0)} KiB`,
      touch === undefined ? "—" : `${(touch.startRssBytes / MIB).toFixed(1)} MiB`,
      touch === undefined ? "—" : `${(touch.peakRssBytes / MIB).toFixed(1)} MiB`,
      touch === undefined ? "—" : `${(touch.finalRssBytes / MIB).toFixed(1)} MiB`,
      touch === undefined ? "—" : `${(touch.collectedRssBytes / MIB).toFixed(1)} MiB`,
      touch === undefined ? "—" : String(touch.openSessions),
    ];
  });
  const touched = results.memory.touchCount.toLocaleString("en-US");
  const targetRows = targets(results).map((t) => [
    t.name,
    t.cells.node,
    ...(drivers.includes("ffi") ? [t.cells.ffi] : []),
    verdict(t.checks),
  ]);
  const load = machine.loadAverage.map((l) => l.toFixed(2)).join(" / ");
  return `# sessionkv benchmark results

Written by \`deno task bench:compare\`${
    results.mode === "quick" ? " --quick (a smoke test: short rounds, small counts)" : ""
  } on ${results.date.slice(0, 10)} at ${results.date.slice(11, 16)} UTC, in ${
    results.seconds.toFixed(0)
  } s. Ratios compare numbers measured in this same run.

| machine                   |                                                                   |
| ------------------------- | ----------------------------------------------------------------- |
| CPU                       | ${machine.cpu}, ${machine.cores} cores                           |
| load average at the start | ${load} (1, 5, 15 min; other work was running)                   |
| memory, OS                | ${machine.memoryGiB.toFixed(1)} GiB, ${machine.os}               |
| Deno                      | ${versions.deno} (V8 ${versions.v8}, TypeScript ${versions.typescript}) |
| SQLite, \`node:sqlite\` driver | ${versions.node}                                              |
| SQLite, ffi driver        | ${ffi}                                                            |

## Operations

Each workload ran ${results.rounds} rounds of ${results.budgetMs} ms per subject, the subjects
taking turns; each number is the median round. "${results.sessions} sessions" takes the sessions
round-robin; every session holds ${KEYS.toLocaleString("en-US")} entries.

${ops}

![Throughput relative to Deno KV on a file](results.svg)

${ratios}

How each subject runs:

- **SessionKv**: \`SessionStore\` with the named driver, a value \`{ role, text, n }\` (structured
  clone, 66 bytes), keys \`["messages", i]\`. Every session of a workload stays open
  (\`maxOpenSessions\` = sessions); eviction is measured on its own below.
- **Deno KV (file)**: \`Deno.openKv(path)\`, one database, the session id as the first key part.
- **raw node:sqlite**: one file per session in WAL mode with \`synchronous = NORMAL\`, prepared
  statements, the value stored pre-encoded and read back undecoded (no structured clone): the
  practical limit of the per-session-file design.
- **shared file**: the same raw statements on one file for every session, a table keyed by
  \`(session, key)\`: the design sessionkv moves away from. In one process it costs little; its
  price is the shared write lock (two processes, below).
- **new session**: open or create the session and write one entry; the shared file just inserts.
  **reopen after eviction**: 64 sessions round-robin through 8 open slots, each read reopening a
  file (raw and Deno KV: open, read, close).

## Two processes

Two child processes write (\`set\`) at the same time for ${two.durationMs / 1000} s${
    two.rounds > 1 ? ` (${two.rounds} runs, averaged)` : ""
  }, each to its own 10 sessions; the first row is one process alone, for scale.

${twoTable}

Own sessions ÷ one shared file, the same SessionKv work: **${
    times(two.sessions.opsPerSecond / two.oneSession.opsPerSecond)
  }**; ÷ the raw shared file: ${times(two.sessions.opsPerSecond / two.shared.opsPerSecond)}. The
shared files wait for one write lock (SessionKv retries with asynchronous sleeps, the raw file in
SQLite's busy handler); own sessions share nothing but the CPU, so on ${machine.cores} busy cores
the gain is bounded by the cores the two processes actually get: own sessions scale ${
    times(two.sessions.opsPerSecond / two.single.opsPerSecond)
  } over one process, the shared session file ${
    times(two.oneSession.opsPerSecond / two.single.opsPerSecond)
  }.

## Cleanup scan

\`store.cleanup({ dryRun: true })\` over ${
    results.cleanup.count.toLocaleString("en-US")
  } idle session directories: ${results.cleanup.seconds.toFixed(2)} s, **${
    count(results.cleanup.dirsPerSecond)
  } directories/s**.

## Resident memory

Measured in child processes. Per idle session: the RSS growth over ${results.memory.idleCount} sessions
opened, written and left open, divided by their number. Touching: ${touched} new sessions, one write
each, with \`maxOpenSessions: 256\`; "RSS before" is the runtime with the module loaded and an empty
store. Closed files' SQLite statements are freed when V8 collects their \`node:sqlite\` wrappers, so
the peak depends on when garbage collection runs: the last column is after a full collection.

${
    table(
      [
        "driver",
        "per idle open session",
        "RSS before",
        `peak RSS, ${touched} touched`,
        "at the end",
        "after a full GC",
        "files open",
      ],
      memoryRows,
    )
  }

## Targets (issue 9)

${
    table(
      [
        "target",
        SUBJECT_NAMES.node,
        ...(drivers.includes("ffi") ? [SUBJECT_NAMES.ffi] : []),
        "verdict",
      ],
      targetRows,
    )
  }

"1 s." is one session, "${results.sessions} s." the round-robin over ${results.sessions}. A get is
bound by SQLite's read transaction on a file (two \`fcntl\` lock calls, which cost microseconds
on this virtual machine): raw \`node:sqlite\`, which neither encodes nor decodes, is itself only
${times(ratio(find(results, "get", 1)?.values.raw, find(results, "get", 1)?.values.denokv))} Deno KV
here, so ≥ 10× is out of reach for any SQLite file store without giving up cross-process access.
`;
}

function find(results: Results, op: string, sessions: number): WorkloadResult | undefined {
  return results.workloads.find((w) => w.op === op && w.sessions === sessions);
}

const COLORS: Partial<Record<SubjectId, string>> = {
  node: "#1f5fbf",
  ffi: "#6f9fe6",
  raw: "#8c8c8c",
  shared: "#d9822b",
};

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * Renders `bench/results.svg`: per workload, each subject's throughput
 * divided by Deno KV's, on a logarithmic axis.
 *
 * @param results One run's measurements.
 * @returns The SVG text.
 */
export function renderSvg(results: Results): string {
  const bars = SUBJECTS.filter((id) =>
    id !== "denokv" && results.workloads.some((w) => id in w.values)
  );
  const rows = results.workloads.map((w) => ({
    name: w.name,
    ratios: bars.map((id) => ratio(w.values[id], w.values.denokv)),
  }));
  const all = rows.flatMap((r) => r.ratios).filter((r): r is number => r !== undefined);
  const ticks = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
  const lo = ticks.filter((t) => t <= Math.min(0.5, ...all)).at(-1) ?? 0.1;
  const hi = ticks.find((t) => t >= Math.max(20, ...all)) ?? 1000;
  const left = 250;
  const width = 920;
  const plot = width - left - 60;
  const barHeight = 11;
  const groupHeight = bars.length * barHeight + 12;
  const top = 70;
  const height = top + rows.length * groupHeight + 40;
  const x = (r: number) => left + (Math.log(r / lo) / Math.log(hi / lo)) * plot;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${left}" y="20" font-size="15" font-weight="bold">Throughput ÷ Deno KV on a file ` +
      `(log scale; right of the dashed line is faster)</text>`,
  );
  bars.forEach((id, i) => {
    const lx = left + i * 160;
    out.push(
      `<rect x="${lx}" y="32" width="12" height="12" fill="${COLORS[id]}"/>`,
      `<text x="${lx + 17}" y="42">${escapeXml(SUBJECT_NAMES[id])}</text>`,
    );
  });
  for (const t of ticks.filter((t) => t >= lo && t <= hi)) {
    const tx = x(t).toFixed(1);
    out.push(
      `<line x1="${tx}" y1="${top - 8}" x2="${tx}" y2="${height - 30}" stroke="${
        t === 1 ? "#000" : "#ddd"
      }"${t === 1 ? ' stroke-dasharray="4 3"' : ""}/>`,
      `<text x="${tx}" y="${height - 14}" text-anchor="middle">${t}×</text>`,
    );
  }
  rows.forEach((row, g) => {
    const gy = top + g * groupHeight;
    out.push(
      `<text x="${left - 8}" y="${gy + groupHeight / 2}" text-anchor="end" ` +
        `dominant-baseline="middle">${escapeXml(row.name)}</text>`,
    );
    row.ratios.forEach((r, i) => {
      if (r === undefined) return;
      const y = gy + i * barHeight;
      const x0 = x(lo);
      const x1 = Math.max(x0 + 1, x(Math.min(Math.max(r, lo), hi)));
      out.push(
        `<rect x="${x0.toFixed(1)}" y="${y}" width="${(x1 - x0).toFixed(1)}" ` +
          `height="${barHeight - 2}" fill="${COLORS[bars[i]!]}"/>`,
        `<text x="${(x1 + 4).toFixed(1)}" y="${y + barHeight - 3}" font-size="10">${
          times(r)
        }</text>`,
      );
    });
  });
  out.push("</svg>", "");
  return out.join("\n");
}
