/**
 * Deno KV's limits (spec §6), in encoded key bytes and serialised value bytes.
 *
 * @module
 */

/** Largest encoded key that can be written. */
export const MAX_WRITE_KEY_BYTES = 2048;
/** Largest range bound that can be read (a get adds one byte to the key). */
export const MAX_READ_KEY_BYTES = 2049;
/** Deno KV's value size limit; `maxValueBytes` can raise it. */
export const DEFAULT_MAX_VALUE_BYTES = 65536;
/** Largest enqueued message. */
export const MAX_ENQUEUE_BYTES = 65536;
/** Keys per `getMany`. */
export const MAX_GET_MANY_KEYS = 10;
/** Explicit `batchSize` of `list`. */
export const MAX_BATCH_SIZE = 1000;
/** Default batch size cap when only `limit` is given. */
export const DEFAULT_BATCH_CAP = 500;
/** Checks per atomic operation. */
export const MAX_CHECKS = 100;
/** Mutations plus enqueues per atomic operation. */
export const MAX_MUTATIONS = 1000;
/** Total size of an atomic operation at the default value limit. */
export const MAX_TOTAL_MUTATION_BYTES = 819200;
/** Total size of the keys of value-carrying mutations. */
export const MAX_TOTAL_KEY_BYTES = 81920;
/** Keys per `watch`. */
export const MAX_WATCH_KEYS = 10;

/**
 * The total mutation size allowed for a value limit: Deno KV's 819200 bytes at
 * the default limit, scaled with it (12.5 values' worth) when it is raised.
 */
export function maxTotalMutationBytes(maxValueBytes: number): number {
  return Math.max(MAX_TOTAL_MUTATION_BYTES, maxValueBytes * 12.5);
}
