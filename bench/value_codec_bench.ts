/**
 * The value codec against `node:v8`: serialize and deserialize a small object
 * and a ~2 KB chat-message list. Only the codec call is timed.
 *
 * Run: `deno bench -A bench/value_codec_bench.ts`
 */
import { deserialize, serialize } from "node:v8";
import { deserializeV8, serializeV8 } from "../src/codec/value_codec.ts";

const small = { role: "user", text: "hello world" };

const chat = {
  sessionId: "b7d5c9e2-3f41-4c8a-9e0d-5a6b7c8d9e0f",
  updatedAt: new Date(1_700_000_000_000),
  messages: Array.from({ length: 11 }, (_, i) => ({
    id: i,
    role: i % 2 === 0 ? "user" : "assistant",
    text: i % 2 === 0
      ? `Question ${i}: how do I store a session in SQLite?`
      : `Answer ${i}: open the store, then call kv.set() with the key — it's ready.`,
    tokens: 12 + i,
    meta: { model: "small-1", latencyMs: 120.5 + i },
  })),
};

const smallBytes = serializeV8(small);
const chatBytes = serializeV8(chat);
console.log(`chat value: ${chatBytes.length} bytes`);

for (
  const [name, value, bytes] of [
    ["small object", small, smallBytes],
    ["chat list (~2 KB)", chat, chatBytes],
  ] as const
) {
  Deno.bench({
    name: "node:v8.serialize",
    group: `serialize ${name}`,
    baseline: true,
    fn: () => void serialize(value),
  });
  Deno.bench({
    name: "serializeV8",
    group: `serialize ${name}`,
    fn: () => void serializeV8(value),
  });
  Deno.bench({
    name: "node:v8.deserialize",
    group: `deserialize ${name}`,
    baseline: true,
    fn: () => void deserialize(bytes),
  });
  Deno.bench({
    name: "deserializeV8",
    group: `deserialize ${name}`,
    fn: () => void deserializeV8(bytes),
  });
}
