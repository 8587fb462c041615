/** Helpers of the LangGraph saver tests: checkpoints, steps, disk usage. */
import {
  type ChannelVersions,
  type Checkpoint,
  type CheckpointMetadata,
  uuid6,
} from "@langchain/langgraph-checkpoint";
import type { RunnableConfig } from "@langchain/core/runnables";
import { join } from "node:path";
import type { SessionCheckpointSaver } from "../langgraph.ts";

/** A checkpoint with these values, all at `versions` (default: version 1). */
export function checkpointOf(
  values: Record<string, unknown>,
  versions: ChannelVersions = Object.fromEntries(Object.keys(values).map((k) => [k, 1])),
): Checkpoint {
  return {
    v: 4,
    id: uuid6(0),
    ts: new Date().toISOString(),
    channel_values: values,
    channel_versions: versions,
    versions_seen: {},
  };
}

/** Metadata of a loop step. */
export function loopMeta(step: number): CheckpointMetadata {
  return { source: "loop", step, parents: {} };
}

/**
 * Writes one step as LangGraph does: `values` changed (each to a version one
 * higher than in `previous`), the others are carried over.
 */
export async function step(
  saver: SessionCheckpointSaver,
  config: RunnableConfig,
  previous: Checkpoint | undefined,
  changed: Record<string, unknown>,
  n: number,
): Promise<{ config: RunnableConfig; checkpoint: Checkpoint }> {
  const versions: ChannelVersions = { ...previous?.channel_versions };
  const newVersions: ChannelVersions = {};
  for (const channel of Object.keys(changed)) {
    newVersions[channel] = versions[channel] = Number(versions[channel] ?? 0) + 1;
  }
  const checkpoint = checkpointOf({ ...previous?.channel_values, ...changed }, versions);
  const next = await saver.put(config, checkpoint, loopMeta(n), newVersions);
  return { config: next, checkpoint };
}

/** Bytes of the files in a directory (not recursive). */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile) total += (await Deno.stat(join(dir, entry.name))).size;
  }
  return total;
}
