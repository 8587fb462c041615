/**
 * A LangGraph.js checkpointer on sessionkv: each conversation thread is a
 * session of a `SessionStore`, in its own SQLite file.
 *
 * ```ts ignore
 * const checkpointer = new SessionCheckpointSaver(store, { botId: "support-bot" });
 * const graph = workflow.compile({ checkpointer }); // thread_id = session id
 * ```
 *
 * @example Resuming a thread in a new store
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { SessionCheckpointSaver } from "@sessionkv/core/langgraph";
 * import { emptyCheckpoint } from "@langchain/langgraph-checkpoint";
 * import { equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * const first = new SessionStore({ root });
 * const checkpoint = emptyCheckpoint();
 * await new SessionCheckpointSaver(first, { botId: "bot" }).put(
 *   { configurable: { thread_id: "t1" } },
 *   checkpoint,
 *   { source: "input", step: -1, parents: {} },
 *   {},
 * );
 * await first.close();
 *
 * await using second = new SessionStore({ root });
 * const saver = new SessionCheckpointSaver(second, { botId: "bot" });
 * const tuple = await saver.getTuple({ configurable: { thread_id: "t1" } });
 * equal(tuple?.checkpoint.id, checkpoint.id);
 * await second.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */
export { SessionCheckpointSaver } from "./src/langgraph/checkpoint_saver.ts";
export type { SessionCheckpointSaverOptions } from "./src/langgraph/checkpoint_saver.ts";
