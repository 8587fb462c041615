/**
 * Output of the command line: a buffered line writer for stdout (so 100,000
 * table rows cost a few hundred writes, not 100,000) and a progress line on
 * stderr that is drawn only on a terminal.
 *
 * @module
 */
import { fit } from "./_format.ts";

const encoder = new TextEncoder();

/** Where output goes: `Deno.stdout` or anything with the same `write`. */
export interface Writer {
  /** Writes some of `bytes`, returning how many. */
  write(bytes: Uint8Array): Promise<number>;
}

/** Writes all of `bytes` to a writer that may write less per call. */
async function writeAll(writer: Writer, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await writer.write(bytes.subarray(written));
}

/** Raised when the reader of our output went away (`| head`). */
export class OutputClosed extends Error {
  constructor(options?: { cause?: unknown }) {
    super("Output closed by the reader", options);
    this.name = "OutputClosed";
  }
}

/** Lines to a writer, buffered up to 64 KiB. */
export class LineWriter {
  readonly #writer: Writer;
  #buffer: string[] = [];
  #size = 0;

  constructor(writer: Writer) {
    this.#writer = writer;
  }

  /** Adds text (with no newline added); flushes when the buffer is full. */
  async write(text: string): Promise<void> {
    this.#buffer.push(text);
    this.#size += text.length;
    if (this.#size >= 65_536) await this.flush();
  }

  /** Adds a line. */
  line(text = ""): Promise<void> {
    return this.write(text + "\n");
  }

  /** Writes out what is buffered. */
  async flush(): Promise<void> {
    if (this.#buffer.length === 0) return;
    const text = this.#buffer.join("");
    this.#buffer = [];
    this.#size = 0;
    try {
      await writeAll(this.#writer, encoder.encode(text));
    } catch (error) {
      if (error instanceof Deno.errors.BrokenPipe) throw new OutputClosed({ cause: error });
      throw error;
    }
  }
}

/**
 * A one-line progress display on stderr, redrawn in place with `\r` at most
 * every 100 ms. Draws nothing unless enabled (stderr is a terminal).
 */
export class ProgressLine {
  readonly #enabled: boolean;
  #last = -Infinity;
  #shown = false;

  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  /** Shows `text` (now when `force`, else when 100 ms passed since the last draw). */
  update(text: string, force = false): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    let columns = 80;
    try {
      // A pseudo-terminal may report 0 columns: keep 80 then.
      columns = Deno.consoleSize().columns || 80;
    } catch {
      // Not a console after all: keep 80.
    }
    const line = fit(text, Math.max(10, columns - 1)).trimEnd();
    this.#draw(`\r${line}\x1b[K`);
    this.#shown = true;
  }

  /** Erases the progress line. */
  clear(): void {
    if (!this.#enabled || !this.#shown) return;
    this.#draw("\r\x1b[K");
    this.#shown = false;
  }

  #draw(text: string): void {
    try {
      const bytes = encoder.encode(text);
      let written = 0;
      while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
    } catch {
      // Progress is a courtesy: never fail the command over it.
    }
  }
}
