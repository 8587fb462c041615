/**
 * The official LangGraph checkpointer conformance suite,
 * `@langchain/langgraph-checkpoint-validation` (`validate()` plus the
 * delta-channel history tests), run against `SessionCheckpointSaver` under
 * `deno test` through a small Vitest-globals shim, once per backend.
 */
import { VitestGlobals } from "./_vitest_globals.ts";
import {
  type CheckpointSaverTestInitializer,
  deltaChannelHistoryTests,
  validate,
} from "@langchain/langgraph-checkpoint-validation";
import { SessionCheckpointSaver } from "../langgraph.ts";
import { testBackends, type TestStore } from "./_backends.ts";

for (const backend of testBackends) {
  const globals = new VitestGlobals();
  globals.install();
  const stores = new Map<SessionCheckpointSaver, TestStore>();
  const initializer: CheckpointSaverTestInitializer<SessionCheckpointSaver> = {
    checkpointerName: `@sessionkv/core/langgraph (${backend.id})`,
    async createCheckpointer() {
      const opened = await backend.makeStore();
      const saver = new SessionCheckpointSaver(opened.store, { botId: "validation" });
      stores.set(saver, opened);
      return saver;
    },
    async destroyCheckpointer(saver) {
      const opened = stores.get(saver);
      if (opened === undefined) return;
      stores.delete(saver);
      await opened[Symbol.asyncDispose]();
    },
  };
  validate(initializer);
  deltaChannelHistoryTests(initializer);

  Deno.test({
    name:
      `[${backend.id}] SessionCheckpointSaver passes @langchain/langgraph-checkpoint-validation`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      const counts = await globals.run(t);
      console.log(
        `conformance: ${counts.passed + counts.failed + counts.skipped} tests, ` +
          `${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`,
      );
      if (counts.failed > 0 || counts.skipped > 0 || counts.passed === 0) {
        throw new Error(`Conformance suite: ${counts.failed} failed, ${counts.skipped} skipped`);
      }
    },
  });
}
