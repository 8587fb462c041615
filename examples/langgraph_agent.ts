/**
 * A LangGraph agent whose conversations survive restarts: every thread is a
 * sessionkv session, checkpointed by `SessionCheckpointSaver`. The chat model
 * is a deterministic fake (no network) that calls an `order_status` tool.
 *
 * Run it twice against the same root; the second run resumes the thread from
 * its checkpoint and remembers the first:
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-env --allow-sys=homedir \
 *   examples/langgraph_agent.ts --root ./data/agent "Where is order 42?"
 * deno run --allow-read --allow-write --allow-env --allow-sys=homedir \
 *   examples/langgraph_agent.ts --root ./data/agent "What did I ask you before?"
 * ```
 *
 * (`--allow-env` and `--allow-sys=homedir` are LangChain's: it reads its
 * settings from the environment and looks for a LangSmith profile at home.)
 *
 * Options: `--root DIR` (required), `--thread ID` (default `user-42`).
 */
import { parseArgs } from "node:util";
import { BaseChatModel } from "@langchain/core/language_models/chat_models";
import {
  AIMessage,
  type BaseMessage,
  HumanMessage,
  isAIMessage,
  ToolMessage,
} from "@langchain/core/messages";
import type { ChatResult } from "@langchain/core/outputs";
import { tool } from "@langchain/core/tools";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { ToolNode } from "@langchain/langgraph/prebuilt";
import { SessionStore } from "../mod.ts";
import { SessionCheckpointSaver } from "../langgraph.ts";

/** The one tool: looks an order up in a fixed table. */
const orderStatus = tool(
  ({ orderId }: { orderId: string }) => {
    const orders: Record<string, string> = { "42": "shipped on Monday", "7": "being packed" };
    return orders[orderId] ?? "unknown";
  },
  {
    name: "order_status",
    description: "Looks up the shipping status of an order",
    schema: {
      type: "object",
      properties: { orderId: { type: "string" } },
      required: ["orderId"],
    },
  },
);

/**
 * A chat model that answers by rules: it calls `order_status` for a question
 * naming an order, reports a tool result, and otherwise recalls the first
 * question of the conversation, so a resumed thread shows its memory.
 */
class ScriptedChatModel extends BaseChatModel {
  _llmType(): string {
    return "scripted";
  }

  _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const message = this.#reply(messages);
    return Promise.resolve({ generations: [{ message, text: String(message.content) }] });
  }

  #reply(messages: BaseMessage[]): AIMessage {
    const last = messages.at(-1);
    if (last instanceof ToolMessage) {
      return new AIMessage(`Order status: ${last.content}.`);
    }
    const text = String(last?.content ?? "");
    const order = /order (\d+)/i.exec(text);
    if (order) {
      const calls = messages.filter((m) => isAIMessage(m) && (m.tool_calls?.length ?? 0) > 0);
      return new AIMessage({
        content: "",
        tool_calls: [{
          name: "order_status",
          args: { orderId: order[1] },
          id: `call_${calls.length}`,
        }],
      });
    }
    const questions = messages.filter((m) => m instanceof HumanMessage).map((m) => m.content);
    return new AIMessage(
      questions.length > 1
        ? `Before this you asked: "${questions[0]}" (message ${messages.length} of this thread).`
        : `Hello! Ask me about an order.`,
    );
  }
}

const model = new ScriptedChatModel({});

/** Builds the agent: `agent` → (`tools` → `agent`)* → end. */
function buildAgent(checkpointer: SessionCheckpointSaver) {
  return new StateGraph(MessagesAnnotation)
    .addNode("agent", async (state) => ({ messages: [await model.invoke(state.messages)] }))
    .addNode("tools", new ToolNode([orderStatus]))
    .addEdge(START, "agent")
    .addConditionalEdges("agent", (state) => {
      const last = state.messages.at(-1);
      return last && isAIMessage(last) && (last.tool_calls?.length ?? 0) > 0 ? "tools" : END;
    })
    .addEdge("tools", "agent")
    .compile({ checkpointer });
}

function describe(message: BaseMessage): string {
  if (isAIMessage(message) && (message.tool_calls?.length ?? 0) > 0) {
    const call = message.tool_calls![0]!;
    return `assistant calls ${call.name}(${JSON.stringify(call.args)})`;
  }
  if (message instanceof ToolMessage) return `tool: ${message.content}`;
  if (message instanceof HumanMessage) return `user: ${message.content}`;
  return `assistant: ${message.content}`;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { root: { type: "string" }, thread: { type: "string", default: "user-42" } },
    allowPositionals: true,
  });
  if (values.root === undefined || positionals.length === 0) {
    console.error('Usage: langgraph_agent.ts --root DIR [--thread ID] "message"');
    Deno.exit(2);
  }
  await using store = new SessionStore({ root: values.root });
  const agent = buildAgent(new SessionCheckpointSaver(store, { botId: "support-bot" }));
  const config = { configurable: { thread_id: values.thread } };

  const before = (await agent.getState(config)).values.messages?.length ?? 0;
  console.log(
    before > 0
      ? `Resumed thread "${values.thread}" from its checkpoint: ${before} earlier messages`
      : `New thread "${values.thread}"`,
  );
  const result = await agent.invoke(
    { messages: [new HumanMessage(positionals.join(" "))] },
    config,
  );
  for (const message of result.messages.slice(before)) console.log(describe(message));
}
