/**
 * One interface between the engine's call-in points and its callbacks: report, read, wait,
 * create, find, list. A single engine answers them locally ({@link LocalRouting} in
 * `local.ts`); replicas on one PostgreSQL schema answer them for the callbacks whose shard they
 * lease and hand the rest to the owner (the clustered implementation the PostgreSQL store
 * supplies). The engine never asks which one it has.
 *
 * @module
 */

import type { Answer } from '../answer.js';
import type { CallbackData } from '../data.js';
import type { CallbackStatus, DispatchStatus } from '../lifecycle/statuses.js';
import type { HistoryOptions, HistoryPage } from '../history.js';
import type { CreateOptions } from '../options/create.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import type { ListOptions } from '../registry/list-callbacks.js';
import type { Span } from '../telemetry.js';
import type {
  CallbackAnswer,
  CallbackDetails,
  ClusterStats,
  CreatedCallback,
  DispatchResult,
  EarlyEventInput,
  EarlyHoldResult,
  EngineStats,
  ListPage,
} from '../types.js';

/** How a report came in. */
export interface ReportOptions {
  /** Its deduplication key: applied once per callback. */
  readonly dedupKey?: string | undefined;
  /** The key was minted for this very delivery: no earlier report can have it (no lookup). */
  readonly freshKey?: boolean | undefined;
  /** A cancel by the engine's own caller (`engine.cancel()`), not by an outside party. */
  readonly caller?: boolean | undefined;
  /** The OpenTelemetry context of the dispatch that carries it (when traced). */
  readonly trace?: unknown;
}

/** Options of `wait()`. */
export interface WaitFor {
  readonly signal?: AbortSignal | undefined;
  readonly children?: boolean | undefined;
}

/** Ways to find a callback's token. */
export type FindQuery =
  { readonly id: string } | { readonly attributes: Readonly<Record<string, unknown>> };

/** The call-in side of an engine's callbacks, local or clustered. */
export interface Routing {
  /** Starts once the store is open (a replica joins its cluster); resolves when it can answer. */
  start(): Promise<void>;
  /** A report to a callback (its token not yet verified): applied here or at its owner. */
  report(
    token: string,
    status: CallbackStatus,
    data: CallbackData,
    options?: ReportOptions,
  ): Promise<DispatchResult>;
  /** Reads a callback: its answer, or `notFound`. */
  read(token: string): Promise<Answer>;
  /** Resolves with the final answer once the callback is terminal. */
  wait(token: string, options: WaitFor): Promise<CallbackAnswer>;
  /** Creates a callback at an anchor (its creation data checked against its schema already). */
  create(
    anchor: ResolvedAnchor,
    options: CreateOptions,
    checkedData: CallbackData | undefined,
    span: Span | undefined,
  ): Promise<CreatedCallback>;
  /** The token of a callback by its id, or by correlation attributes. */
  findToken(query: FindQuery): Promise<string | undefined>;
  /** Pages of callbacks in creation order. */
  list(options: ListOptions): Promise<ListPage>;
  /** A callback's record for admin views. */
  details(id: string): Promise<CallbackDetails | undefined>;
  /** A page of a callback's history (its token verified, or its id). */
  history(tokenOrId: string, options: HistoryOptions): Promise<HistoryPage>;
  /** Runs a terminal callback's failed final step again. */
  retryStep(tokenOrId: string): Promise<CallbackAnswer>;
  /** Offers a CloudEvent that found no callback to the anchors that hold early events. */
  holdEarly(event: EarlyEventInput, status: DispatchStatus | undefined): Promise<EarlyHoldResult>;
  /** Counters of its own (early events, the cluster), added to the engine's stats. */
  stats(): Pick<EngineStats, 'early'> & { cluster?: ClusterStats };
  /** Stops taking work that would reach the store after it closes (a replica hands over). */
  leave(): Promise<void>;
  /** Releases what it holds (timers, connections). */
  close(): Promise<void>;
  /** Whether this engine may keep a callback in memory (replicas: only the owner of its shard). */
  mayHold?(id: string): boolean;
}
