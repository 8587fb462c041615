/**
 * The channel references of recently written checkpoints, so that a `put`
 * finds its parent's without reading it back. Checkpoints never change once
 * written, so entries cannot go stale; deleting a thread drops its entries.
 *
 * @module
 */
import type { ChannelRefs } from "./_layout.ts";

/** Entries kept; the least recently used go first. */
const MAX_ENTRIES = 1024;

/** A bounded map from `(thread, namespace, checkpoint id)` to channel references. */
export class RefsCache {
  readonly #entries = new Map<string, ChannelRefs>();

  #key(threadId: string, ns: string, id: string): string {
    return JSON.stringify([threadId, ns, id]);
  }

  /** The references of a checkpoint, if cached. */
  get(threadId: string, ns: string, id: string): ChannelRefs | undefined {
    const key = this.#key(threadId, ns, id);
    const refs = this.#entries.get(key);
    if (refs !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, refs);
    }
    return refs;
  }

  /** Remembers the references of a checkpoint. */
  set(threadId: string, ns: string, id: string, refs: ChannelRefs): void {
    const key = this.#key(threadId, ns, id);
    this.#entries.delete(key);
    this.#entries.set(key, refs);
    if (this.#entries.size > MAX_ENTRIES) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
  }

  /** Forgets every checkpoint of a thread. */
  deleteThread(threadId: string): void {
    const prefix = JSON.stringify([threadId]).slice(0, -1) + ",";
    for (const key of [...this.#entries.keys()]) {
      if (key.startsWith(prefix)) this.#entries.delete(key);
    }
  }
}
