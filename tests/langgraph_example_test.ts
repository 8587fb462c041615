import { ok } from "node:assert/strict";
import { withTempDir } from "./_helpers.ts";

const example = new URL("../examples/langgraph_agent.ts", import.meta.url).pathname;

async function runAgent(root: string, message: string): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys=homedir",
      example,
      "--root",
      root,
      message,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  ok(code === 0, `exit code ${code}: ${new TextDecoder().decode(stderr)}`);
  return out;
}

Deno.test("examples/langgraph_agent.ts resumes a conversation from its checkpoint after a restart", async () => {
  await withTempDir(async (root) => {
    const first = await runAgent(root, "Where is order 42?");
    ok(first.includes('New thread "user-42"'), first);
    ok(first.includes('assistant calls order_status({"orderId":"42"})'), first);
    ok(first.includes("tool: shipped on Monday"), first);
    ok(first.includes("assistant: Order status: shipped on Monday."), first);

    const second = await runAgent(root, "What did I ask you before?");
    ok(second.includes('Resumed thread "user-42" from its checkpoint: 4 earlier messages'), second);
    ok(second.includes('assistant: Before this you asked: "Where is order 42?"'), second);
  });
});
