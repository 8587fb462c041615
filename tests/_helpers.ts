/** Shared test helpers: temp directories, fd counting, child processes. */

/** mulberry32: a small seeded PRNG returning numbers in [0, 1), so failures reproduce. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `fn` with a fresh temp directory and removes it afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "sessionkv-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Paths this process has open whose path contains `fragment` (Linux /proc). */
export function openFiles(fragment: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      if (target.includes(fragment)) out.push(target);
    } catch {
      // The fd closed while we looked.
    }
  }
  return out;
}

/** A child Deno process whose stdout is read line by line. */
export interface DenoChild extends AsyncDisposable {
  process: Deno.ChildProcess;
  /** Resolves with the first stdout line that equals or starts with `text`. */
  waitFor(text: string): Promise<string>;
  /** Every stdout line so far. */
  lines: string[];
  /** Closes stdin (the fixtures take that as "finish"). */
  closeStdin(): Promise<void>;
}

const fixtures = new URL("./fixtures/", import.meta.url);

/**
 * Starts `tests/fixtures/<script>` in a new Deno process with all permissions.
 * Disposing it kills the process if it still runs and waits for it.
 */
export function spawnFixture(script: string, args: string[], flags: string[] = ["-A"]): DenoChild {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, new URL(script, fixtures).pathname, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const waiters: { text: string; resolve(line: string): void; reject(e: Error): void }[] = [];
  const reading = (async () => {
    let buffer = "";
    for await (const chunk of process.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        lines.push(line);
        for (const w of waiters.splice(0)) {
          if (line.startsWith(w.text)) w.resolve(line);
          else waiters.push(w);
        }
      }
    }
    for (const w of waiters.splice(0)) {
      w.reject(new Error(`${script} exited without printing "${w.text}"`));
    }
  })();
  let stdinClosed = false;
  const closeStdin = async () => {
    if (stdinClosed) return;
    stdinClosed = true;
    await process.stdin.close().catch(() => undefined);
  };
  return {
    process,
    lines,
    closeStdin,
    waitFor(text: string) {
      const seen = lines.find((l) => l.startsWith(text));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => waiters.push({ text, resolve, reject }));
    },
    async [Symbol.asyncDispose]() {
      await closeStdin();
      try {
        process.kill("SIGKILL");
      } catch { /* already exited */ }
      await process.status;
      await reading;
    },
  };
}
