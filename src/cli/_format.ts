/**
 * Formatting for the command line: sizes, durations, dates, counts, and
 * terminal-safe, column-fitted text. Pure functions, no I/O.
 *
 * @module
 */

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Parses a duration like `7d`, `36h`, `90m`, `30s`, `1d12h` or `1.5d`.
 *
 * @returns Milliseconds, or `undefined` when `text` is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  const part = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d|w)/y;
  let ms = 0;
  let at = 0;
  while (at < trimmed.length) {
    part.lastIndex = at;
    const match = part.exec(trimmed);
    if (match === null) return undefined;
    ms += Number(match[1]) * UNIT_MS[match[2]!]!;
    at = part.lastIndex;
  }
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** Milliseconds as the shortest exact duration: `7d`, `36h`, `1d 30m`, `250ms`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const unit of ["d", "h", "m", "s", "ms"] as const) {
    const size = UNIT_MS[unit]!;
    const n = Math.floor(rest / size);
    if (n > 0) {
      parts.push(`${n}${unit}`);
      rest -= n * size;
    }
  }
  return parts.join(" ");
}

/** Seconds with one decimal for elapsed time: `12.3 s`, `250 ms`. */
export function formatElapsed(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Bytes in binary units: `512 B`, `4.0 KiB`, `1.2 GiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes / 1024;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value.toFixed(1)} ${units[i]}`;
}

/** A count with thousands separators: `100,000`. */
export function formatCount(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

const pad2 = (n: number) => String(n).padStart(2, "0");

/** A date as `YYYY-MM-DD HH:MM:SS` in UTC. */
export function formatUtc(date: Date): string {
  if (Number.isNaN(date.getTime())) return "-";
  return `${date.getUTCFullYear()}-${pad2(date.getUTCMonth() + 1)}-${pad2(date.getUTCDate())} ` +
    `${pad2(date.getUTCHours())}:${pad2(date.getUTCMinutes())}:${pad2(date.getUTCSeconds())}`;
}

/**
 * Makes untrusted text (ids are any strings) safe to print on a terminal:
 * control characters, line breaks and bidirectional overrides become
 * visible escapes (`\x1b`, `\n`, `\u202e`) instead of acting on the screen.
 */
export function displayText(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g,
    (c) => {
      const code = c.charCodeAt(0);
      if (c === "\n") return "\\n";
      if (c === "\r") return "\\r";
      if (c === "\t") return "\\t";
      return code < 0x100
        ? `\\x${code.toString(16).padStart(2, "0")}`
        : `\\u${code.toString(16).padStart(4, "0")}`;
    },
  );
}

/** Terminal columns a code point takes: 0 for combining marks, 2 for wide ones. */
function columnsOf(cp: number, ch: string): number {
  if (/\p{M}|\u200b|\u200d|[\ufe00-\ufe0f]/u.test(ch)) return 0;
  if (
    (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** Terminal columns `text` takes (an approximation of `wcwidth`). */
export function textWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += columnsOf(ch.codePointAt(0)!, ch);
  return width;
}

/**
 * Fits text into exactly `width` columns: pads it, or cuts it and ends it
 * with `…`. Numbers are right-aligned with `align: "right"`.
 */
export function fit(text: string, width: number, align: "left" | "right" = "left"): string {
  let used = textWidth(text);
  if (used > width) {
    let out = "";
    used = 0;
    for (const ch of text) {
      const w = columnsOf(ch.codePointAt(0)!, ch);
      if (used + w > width - 1) break;
      out += ch;
      used += w;
    }
    text = out + "…";
    used += 1;
  }
  const padding = " ".repeat(Math.max(0, width - used));
  return align === "left" ? text + padding : padding + text;
}
