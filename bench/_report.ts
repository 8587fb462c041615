/**
 * Private to `bench/compare.ts`: turns its measurements into
 * `bench/RESULTS.md` (tables, targets) and `bench/results.svg` (ratios
 * against Deno KV, hand-written SVG).
 *
 * @module
 */
import type { TouchResult } from "./_compare_worker.ts";
import {
  KEYS,
  SESSIONKV_VARIANTS,
  type SessionKvId,
  SUBJECT_IDS,
  SUBJECT_NAMES,
  type SubjectId,
} from "./_subjects.ts";

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
    /** SessionKv with exclusive locking, each process on its own sessions. */
    exclusive: TwoProcessMode;
    /** SessionKv, both processes in one session file: the same work, one file. */
    oneSession: TwoProcessMode;
    /** Raw statements, both processes in one shared SQLite file. */
    shared: TwoProcessMode;
  };
  cleanup: { count: number; seconds: number; dirsPerSecond: number };
  memory: {
    idleCount: number;
    touchCount: number;
    /** Resident bytes per open idle session, by SessionKv variant. */
    idle: Partial<Record<SessionKvId, number>>;
    touch: Partial<Record<SessionKvId, TouchResult>>;
    /** SessionKv (node) touching with {@linkcode SMALL_YOUNG_GENERATION}. */
    touchSmallYoung?: TouchResult;
  };
  /** Wall time of the whole run. */
  seconds: number;
}

const SESSIONKV_IDS = SESSIONKV_VARIANTS.map((v) => v.id);

/**
 * The V8 flag of the extra touching run: semi-spaces of 1 MiB, so the young
 * generation stays at 2 MiB instead of growing to 32 MiB under churn.
 */
export const SMALL_YOUNG_GENERATION = "--max-semi-space-size=1";
const MIB = 2 ** 20;

/** The locking mode of a SessionKv variant. */
function lockingOf(id: SessionKvId): "normal" | "exclusive" {
  return SESSIONKV_VARIANTS.find((v) => v.id === id)!.lockingMode;
}

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

/** A target checked on each SessionKv variant and configuration it applies to. */
interface Target {
  name: string;
  /** One cell per SessionKv variant: the values measured, each marked ✓ or ✗. */
  cells: Partial<Record<SessionKvId, string>>;
  /** Every check, passed or not, by the locking mode of the variant checked. */
  checks: Record<"normal" | "exclusive", boolean[]>;
}

function newTarget(name: string): Target {
  return { name, cells: {}, checks: { normal: [], exclusive: [] } };
}

/** Records one check of `target` on SessionKv variant `id`. */
function check(target: Target, id: SessionKvId, ok: boolean): boolean {
  target.checks[lockingOf(id)].push(ok);
  return ok;
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
    const target = newTarget(name);
    for (const id of SESSIONKV_IDS) {
      const parts: string[] = [];
      for (const sessions of configs) {
        const w = find(op, sessions);
        const mine = w?.values[id];
        const other = w?.values[against];
        if (mine === undefined || other === undefined) continue;
        const r = measure(mine, other);
        const passed = check(target, id, ok(r));
        parts.push(`${times(r)} ${mark(passed)} (${sessions === 1 ? "1" : sessions} s.)`);
      }
      if (parts.length > 0) target.cells[id] = parts.join(", ");
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

  // "The same work on one shared file": SessionKv in both. One session file
  // shared by two processes needs normal locking, so it is the scale for both.
  const two = results.twoProcesses;
  const twoTarget = newTarget("2 processes, own sessions ≥ 1.6× one shared file, no stall > 50 ms");
  const ownSessions: [SessionKvId, TwoProcessMode][] = [
    ["node", two.sessions],
    ["exclusive", two.exclusive],
  ];
  for (const [id, mode] of ownSessions) {
    const r = mode.opsPerSecond / two.oneSession.opsPerSecond;
    const passed = check(twoTarget, id, r >= 1.6 && mode.maxStallMs <= 50);
    twoTarget.cells[id] = `${times(r)}, longest write ${mode.maxStallMs.toFixed(1)} ms ${
      mark(passed)
    }`;
  }
  out.push(twoTarget);

  const idle = newTarget("idle open session ≤ 150 KiB resident");
  const touch = newTarget(
    `${results.memory.touchCount.toLocaleString("en-US")} sessions touched, ` +
      "maxOpenSessions 256: < 100 MiB resident",
  );
  for (const id of SESSIONKV_IDS) {
    const bytes = results.memory.idle[id];
    if (bytes !== undefined) {
      const passed = check(idle, id, bytes <= 150 * 1024);
      idle.cells[id] = `${(bytes / 1024).toFixed(0)} KiB ${mark(passed)}`;
    }
    const t = results.memory.touch[id];
    if (t !== undefined) {
      const passed = check(touch, id, t.peakRssBytes < 100 * MIB);
      touch.cells[id] = `peak ${(t.peakRssBytes / MIB).toFixed(1)} MiB ${mark(passed)}`;
    }
  }
  out.push(idle, touch);

  // The scan runs on a default store; it opens no session.
  const scan = newTarget("cleanup scan ≥ 20,000 session directories/s");
  const scanOk = check(scan, "node", results.cleanup.dirsPerSecond >= 20_000);
  scan.cells.node = `${count(results.cleanup.dirsPerSecond)}/s ${mark(scanOk)}`;
  out.push(scan);
  return out;
}

function judge(checks: boolean[]): string {
  if (checks.length === 0) return "not measured";
  if (checks.every((c) => c)) return "**met**";
  return checks.some((c) => c) ? "partly" : "not met";
}

/**
 * The verdict of the default (normal locking) variants; when exclusive
 * locking fares differently, both, e.g. "not met by default; **met** with
 * exclusive locking".
 */
function verdict(target: Target): string {
  const normal = judge(target.checks.normal);
  if (target.checks.exclusive.length === 0) return normal;
  const exclusive = judge(target.checks.exclusive);
  return exclusive === normal
    ? normal
    : `${normal} by default; ${exclusive} with exclusive locking`;
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
  const subjects = SUBJECT_IDS.filter((id) => results.workloads.some((w) => id in w.values));
  const sessionKvs = SESSIONKV_IDS.filter((id) => subjects.includes(id));
  const ops = table(
    ["workload", "unit", ...subjects.map((id) => SUBJECT_NAMES[id])],
    results.workloads.map((w) => [w.name, w.unit, ...subjects.map((id) => count(w.values[id]))]),
  );
  const others = subjects.filter((id) => id !== "denokv");
  const ratios = table(
    [
      "workload",
      ...others.map((id) => `${SUBJECT_NAMES[id]} ÷ Deno KV`),
      ...sessionKvs.map((id) => `${SUBJECT_NAMES[id]} ÷ raw`),
    ],
    results.workloads.map((w) => [
      w.name,
      ...others.map((id) => times(ratio(w.values[id], w.values.denokv))),
      ...sessionKvs.map((id) => times(ratio(w.values[id], w.values.raw))),
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
    twoRow("SessionKv (exclusive), each process on its own 10 sessions", two.exclusive),
    twoRow("SessionKv, both in one session file (session id as first key part)", two.oneSession),
    twoRow("raw statements, both in one shared file keyed by (session, key)", two.shared),
  ]);
  const mib = (bytes: number | undefined) =>
    bytes === undefined ? "—" : `${(bytes / MIB).toFixed(1)} MiB`;
  const memoryRow = (name: string, idle: number | undefined, touch: TouchResult | undefined) => [
    name,
    idle === undefined ? "—" : `${(idle / 1024).toFixed(0)} KiB`,
    mib(touch?.startRssBytes),
    mib(touch?.peakRssBytes),
    mib(touch?.finalRssBytes),
    touch?.finalRss === undefined
      ? "—"
      : `${mib(touch.finalRss.anonBytes)} / ${mib(touch.finalRss.fileBytes)}`,
    touch === undefined ? "—" : `${mib(touch.heapTotalBytes)} (${mib(touch.youngGenerationBytes)})`,
    mib(touch?.collectedRssBytes),
    touch === undefined ? "—" : String(touch.openSessions),
  ];
  const memoryRows = sessionKvs.map((id) =>
    memoryRow(SUBJECT_NAMES[id], results.memory.idle[id], results.memory.touch[id])
  );
  if (results.memory.touchSmallYoung !== undefined) {
    memoryRows.push(
      memoryRow(
        `${SUBJECT_NAMES.node}, \`--v8-flags=${SMALL_YOUNG_GENERATION}\``,
        undefined,
        results.memory.touchSmallYoung,
      ),
    );
  }
  const touched = results.memory.touchCount.toLocaleString("en-US");
  const targetRows = targets(results).map((t) => [
    t.name,
    ...sessionKvs.map((id) => t.cells[id] ?? "—"),
    verdict(t),
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

- **SessionKv**: \`SessionStore\` with the named driver and the default \`lockingMode: "normal"\`,
  a value \`{ role, text, n }\` (structured clone, 66 bytes), keys \`["messages", i]\`. Every
  session of a workload stays open (\`maxOpenSessions\` = sessions); eviction is measured on its own
  below.
- **SessionKv (node, exclusive)**: the same on the node driver with \`lockingMode: "exclusive"\`
  (SQLite's \`locking_mode=EXCLUSIVE\`): the process keeps each open session file locked, so reads
  and writes skip the per-transaction \`fcntl\` lock calls, and other processes cannot open those
  sessions meanwhile (they wait \`busyTimeoutMs\`, then fail with \`SessionBusyError\`). The raw
  subjects keep normal locking, so this one can beat them.
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
  }**; ÷ the raw shared file: ${
    times(two.sessions.opsPerSecond / two.shared.opsPerSecond)
  }. With exclusive locking (possible because no session is shared) own sessions reach ${
    times(two.exclusive.opsPerSecond / two.oneSession.opsPerSecond)
  } the shared session file (which needs normal locking). The
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
store. "anon / file-backed" splits the final RSS (Linux): file-backed pages are mostly the Deno
binary's own code, shared with every other Deno process. "V8 heap" is what V8 holds from the OS,
its young generation in brackets: under this churn V8 grows the young generation to its 32 MiB
maximum, which the library cannot shrink. The last row touches the same sessions with
\`--v8-flags=${SMALL_YOUNG_GENERATION}\` (or \`DENO_V8_FLAGS\`), as a memory-bound deployment would
run. The next-to-last column is after a full garbage collection.

${
    table(
      [
        "subject",
        "per idle open session",
        "RSS before",
        `peak RSS, ${touched} touched`,
        "at the end",
        "of which anon / file-backed",
        "V8 heap (young gen.)",
        "after a full GC",
        "files open",
      ],
      memoryRows,
    )
  }

## Targets (issue 9)

${table(["target", ...sessionKvs.map((id) => SUBJECT_NAMES[id]), "verdict"], targetRows)}

"1 s." is one session, "${results.sessions} s." the round-robin over ${results.sessions}. A get is
bound by SQLite's read transaction on a file (two \`fcntl\` lock calls, which cost microseconds
on this virtual machine): raw \`node:sqlite\`, which neither encodes nor decodes, is itself only
${times(ratio(find(results, "get", 1)?.values.raw, find(results, "get", 1)?.values.denokv))} Deno KV
here, so ≥ 10× is out of reach for any SQLite file store that other processes may open at any time.
${exclusiveGets(results)}`;
}

/** The closing note on exclusive locking and gets, if it ran. */
function exclusiveGets(results: Results): string {
  const ratios = [1, results.sessions].map((sessions) => {
    const w = find(results, "get", sessions);
    return ratio(w?.values.exclusive, w?.values.denokv);
  });
  if (ratios.every((r) => r === undefined)) return "";
  return `Exclusive locking gives that up for the sessions a process has open and skips those lock
calls: its gets run at ${times(ratios[0])} Deno KV with 1 session and ${
    times(ratios[1])
  } with ${results.sessions} sessions.
`;
}

function find(results: Results, op: string, sessions: number): WorkloadResult | undefined {
  return results.workloads.find((w) => w.op === op && w.sessions === sessions);
}

const COLORS: Partial<Record<SubjectId, string>> = {
  node: "#1f5fbf",
  ffi: "#6f9fe6",
  exclusive: "#7a3db8",
  raw: "#8c8c8c",
  shared: "#d9822b",
};

/**
 * The legend: a swatch and name per subject, left to right from `left`,
 * wrapping before `right`. Returns the SVG elements and the y below it.
 */
function legend(ids: SubjectId[], left: number, right: number): { svg: string[]; bottom: number } {
  const svg: string[] = [];
  let lx = left;
  let ly = 32;
  for (const id of ids) {
    const name = SUBJECT_NAMES[id];
    // About 7 px per character at font-size 12, then a gap.
    const w = 17 + name.length * 7 + 20;
    if (lx > left && lx + w > right) {
      lx = left;
      ly += 18;
    }
    svg.push(
      `<rect x="${lx}" y="${ly}" width="12" height="12" fill="${COLORS[id]}"/>`,
      `<text x="${lx + 17}" y="${ly + 10}">${escapeXml(name)}</text>`,
    );
    lx += w;
  }
  return { svg, bottom: ly + 12 };
}

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
  const bars = SUBJECT_IDS.filter((id) =>
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
  const key = legend(bars, left, width - 20);
  const top = key.bottom + 26;
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
  out.push(...key.svg);
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
