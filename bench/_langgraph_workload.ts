/**
 * The LangGraph checkpointer workload shared by `langgraph_bench.ts` and
 * `postgres_bench.ts`: a 20-message chat checkpoint and a step loop that
 * puts one checkpoint per step.
 */
import { AIMessage, HumanMessage } from "@langchain/core/messages";
import type { RunnableConfig } from "@langchain/core/runnables";
import { type BaseCheckpointSaver, type Checkpoint, uuid6 } from "@langchain/langgraph-checkpoint";

/** The chat every checkpoint holds: 10 questions and 10 ~300-character answers. */
export const MESSAGES: (HumanMessage | AIMessage)[] = Array.from(
  { length: 20 },
  (_, i) =>
    i % 2 === 0
      ? new HumanMessage({
        content: `Question ${i}: how do I keep state per conversation?`,
        id: `m${i}`,
      })
      : new AIMessage({
        content: `Answer ${i}: `.padEnd(300, "give each thread its own file. "),
        id: `m${i}`,
      }),
);

/**
 * A step loop: each step changes `changed` (the first step of a thread every
 * channel). A new thread starts every `threadSteps` steps, so that
 * MemorySaver's latest-checkpoint lookup (a sort of the whole history) stays
 * cheap in the throughput bench. `saver` may be swapped for the same storage
 * reopened; the loop goes on where it was.
 */
export class Steps {
  #versions: Record<string, number> = {};
  #config: RunnableConfig = {};
  #n = 0;
  constructor(
    public saver: BaseCheckpointSaver,
    readonly prefix: string,
    readonly threadSteps = 100,
  ) {}
  /** The current thread's latest checkpoint. */
  get latest(): RunnableConfig {
    return { configurable: { ...this.#config.configurable, checkpoint_id: undefined } };
  }
  /** Puts the next checkpoint. */
  async put(changed: string[]): Promise<RunnableConfig> {
    if (this.#n % this.threadSteps === 0) {
      const thread_id = `${this.prefix}${Math.floor(this.#n / this.threadSteps)}`;
      this.#config = { configurable: { thread_id, checkpoint_ns: "" } };
      this.#versions = { messages: 0, counter: 0 };
      changed = ["messages", "counter"];
    }
    const newVersions: Record<string, number> = {};
    for (const c of changed) newVersions[c] = ++this.#versions[c]!;
    const checkpoint: Checkpoint = {
      v: 4,
      id: uuid6(0),
      ts: new Date().toISOString(),
      channel_values: { messages: MESSAGES, counter: this.#n },
      channel_versions: { ...this.#versions },
      versions_seen: { agent: { messages: this.#versions.messages! } },
    };
    this.#config = await this.saver.put(
      this.#config,
      checkpoint,
      { source: "loop", step: this.#n++, parents: {} },
      newVersions,
    );
    return this.#config;
  }
  /** Puts the next checkpoint and reads the thread's latest back. */
  async pair(changed: string[]): Promise<void> {
    await this.put(changed);
    if ((await this.saver.getTuple(this.latest)) === undefined) {
      throw new Error("lost checkpoint");
    }
  }
}
