/**
 * The official LangGraph checkpointer conformance suite,
 * `@langchain/langgraph-checkpoint-validation` (`validate()` plus the
 * delta-channel history tests), run against `SessionCheckpointSaver` under
 * `deno test` through a small Vitest-globals shim.
 */
import { VitestGlobals } from "./_vitest_globals.ts";
import {
  type CheckpointSaverTestInitializer,
  deltaChannelHistoryTests,
  validate,
} from "@langchain/langgraph-checkpoint-validation";
import { SessionStore } from "../mod.ts";
import { SessionCheckpointSaver } from "../langgraph.ts";

const globals = new VitestGlobals();
globals.install();

const stores = new Map<SessionCheckpointSaver, { store: SessionStore; root: string }>();

const initializer: CheckpointSaverTestInitializer<SessionCheckpointSaver> = {
  checkpointerName: "@sessionkv/core/langgraph",
  async createCheckpointer() {
    const root = await Deno.makeTempDir({ prefix: "sessionkv-lg-validation-" });
    const store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "validation" });
    stores.set(saver, { store, root });
    return saver;
  },
  async destroyCheckpointer(saver) {
    const entry = stores.get(saver);
    if (entry === undefined) return;
    stores.delete(saver);
    await entry.store.close();
    await Deno.remove(entry.root, { recursive: true });
  },
};

validate(initializer);
deltaChannelHistoryTests(initializer);

Deno.test({
  name: "SessionCheckpointSaver passes @langchain/langgraph-checkpoint-validation",
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
