/**
 * The backend seam under `SessionStore`: where sessions are kept. The store
 * keeps everything that is per process (the handle map, one open per
 * session, open-engine slots, idle closing, the FIFO turn of `acquire`,
 * views, watches); a backend keeps the sessions themselves and what must
 * hold across processes or hosts: the session's storage (a {@linkcode
 * KvEngine}), the cross-process lease, the list of sessions, their deletion
 * and the idle cleanup.
 *
 * Three backends exist: SQLite files under a root directory (the default),
 * PostgreSQL (`@sessionkv/core/postgres`) and any `Deno.Kv`
 * (`@sessionkv/core/denokv`).
 *
 * @module
 */
import type { KvEngine, MaybePromise } from "./engine.ts";
import type { SessionCorruptedError } from "./errors.ts";

/** One session, by its ids. */
export interface SessionRef {
  /** The bot id (validated). */
  readonly botId: string;
  /** The session id (validated). */
  readonly sessionId: string;
}

/** One open session's storage. */
export interface BackendEngine extends KvEngine {
  /** Releases what the engine holds (a file, a cached connection). */
  close(): MaybePromise<void>;
  /** Removes expired rows from storage, where the backend keeps them. */
  sweepExpired?(now: number): MaybePromise<unknown>;
}

/** Something held until released: a pin or a lease. */
export interface BackendHold {
  /** Lets go. Called once. */
  release(): MaybePromise<void>;
}

/** How the store asks a backend for a lease. */
export interface LeaseRequest {
  /** Epoch ms after which waiting fails with `timeout()`. */
  deadline: number;
  /** Cancels waiting. */
  signal?: AbortSignal | undefined;
  /** The error to throw at the deadline. */
  timeout(): Error;
  /** Throws when the store closed meanwhile. */
  assertOpen(): void;
}

/** A session as a backend lists it. */
export interface BackendSessionInfo {
  /** The bot id. */
  botId: string;
  /** The session id. */
  sessionId: string;
  /** Where it lives: a directory, or a backend-specific address. */
  path: string;
  /** Bytes stored. */
  sizeBytes: number;
  /** Newest write. */
  lastActivity: Date;
  /** Whether another process or host has it open or leased. */
  openElsewhere: boolean;
}

/** What the store knows of one session in this process. */
export interface LocalSession {
  /** A view, a lease, a waiter or a running operation holds it. */
  readonly inUse: boolean;
  /** Last use in this process, epoch ms. */
  readonly lastUsed: number;
  /** Its engine is open (and idle, unless `inUse`). */
  readonly open: boolean;
  /** Closes the idle engine; the session reopens on its next use. */
  close(): Promise<void>;
}

/** The running totals of a cleanup, filled in by the backend. */
export interface CleanupTally {
  /** Sessions looked at. */
  scanned: number;
  /** Sessions deleted (or that would be, in a dry run). */
  deleted: number;
  /** Sessions kept because they are in use. */
  skippedInUse: number;
  /** Bytes freed (or that would be). */
  bytesFreed: number;
  /** Sessions or places that could not be handled. */
  errors: { path: string; message: string }[];
}

/** One cleanup run, as the store hands it to the backend. */
export interface CleanupRun {
  /** Delete sessions whose last write is at or before this, epoch ms. */
  cutoffMs: number;
  /** Count only, delete nothing. */
  dryRun: boolean;
  /** Totals to fill in. */
  tally: CleanupTally;
  /** Throws when the run was aborted or the store closed. */
  check(): void;
  /** Reports progress after each session. */
  progress(): void;
  /** This process's state of a session, `undefined` when it has none. */
  local(ref: SessionRef): LocalSession | undefined;
  /** Sweeps a session's expired keys from storage (through the store). */
  sweepExpired(ref: SessionRef): Promise<void>;
}

/** Where a `SessionStore` keeps its sessions. */
export interface SessionBackend {
  /** A short description for messages and `store.root`: a directory or a redacted address. */
  readonly location: string;
  /**
   * Marks the session as in use by this process, for cleanups in other
   * processes, from before its first open until the store forgets it (files:
   * a shared lock on `open.lock`, which also creates the directory).
   */
  pin(ref: SessionRef): Promise<BackendHold>;
  /** Opens (creating if needed) the session's storage. Called while pinned. */
  open(ref: SessionRef): Promise<BackendEngine>;
  /**
   * Takes the session's lease across processes and hosts, waiting until
   * `request.deadline`. A holder that dies loses it.
   */
  lease(ref: SessionRef, request: LeaseRequest): Promise<BackendHold>;
  /** Lists sessions, streaming. `botId` narrows it to one bot. */
  sessions(botId: string | undefined): AsyncIterable<BackendSessionInfo>;
  /**
   * Deletes one session that this process holds no more (no engine, no pin).
   * `"busy"`: another process has it open or leased; the store retries.
   */
  deleteSession(ref: SessionRef): Promise<"deleted" | "absent" | "busy">;
  /** Deletes sessions idle past `run.cutoffMs` that nobody uses. */
  cleanup(run: CleanupRun): Promise<void>;
  /** The error as `SessionCorruptedError` when it shows a damaged session. */
  damage?(ref: SessionRef, error: unknown): SessionCorruptedError | undefined;
  /** Releases the backend's own resources (pools). Called once by `store.close()`. */
  close(): Promise<void>;
}
