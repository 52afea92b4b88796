/**
 * Public shapes of messages, answers, steps and events.
 *
 * @module
 */

import type { CallbackData } from './data.js';
import type {
  AnswerStatus,
  CallbackStatus,
  DispatchStatus,
  StepKey,
} from './lifecycle/statuses.js';
import type { RetryPolicy } from './retry.js';

/** A report from an outside party (spec 11.1). */
export interface CallbackReportMessage {
  type: 'CALLBACK';
  /** The callback token the outside party was handed. */
  callbackToken: string;
  /** The reported status. */
  callbackStatus: DispatchStatus;
  /** Report data, shallow-merged into the callback's data. */
  callbackData?: Record<string, unknown> | undefined;
  /**
   * A deduplication key (1–200 characters): a report delivered again with the same key (a
   * retry, a second replica) is applied once. Kept in the store with a durable store that
   * supports it (PostgreSQL), else for the engine's lifetime in a bounded set.
   */
  dedupKey?: string | undefined;
}

/**
 * A read request through the dispatch call-in point (spec 11.1): `getCallback` answers
 * `{ status, token, data }`; `exists` answers status `exists` or `notFound` with the token and
 * no data. For a relayed (wrapped) token both ask the origin and hand back the wrapped token.
 */
export interface CallbackActionMessage {
  type: 'CALLBACK';
  callbackToken: string;
  callbackAction: 'getCallback' | 'exists';
}

/** Anything {@link CallbackEngine.dispatch} accepts. */
export type CallbackMessage = CallbackReportMessage | CallbackActionMessage;

/** The output attributes of a callback (spec 7), under the anchor's names. */
export type CallbackAttributes = Readonly<Record<string, unknown>>;

/**
 * A step failure recorded on its callback: a step that threw, ran past `stepTimeout`, returned
 * output over `maxCallbackBytes`, or whose worker module could not be loaded. A failure while the
 * callback was active also moved it to `error`; one after it was terminal changes nothing else.
 */
export interface StepError {
  /** The status the failed step ran for. */
  readonly status: CallbackStatus;
  /** Why it failed (what it threw, or the limit it passed). */
  readonly message: string;
}

/** The answer to every dispatch and read: the status after handling. */
export interface CallbackAnswer {
  /** Status after handling; may differ from what was sent (`cancel`, `timeout`, `notFound`, ...). */
  readonly status: AnswerStatus;
  /** The token the answer is about. */
  readonly token: string;
  /** The callback's merged data (frozen); `{}` for `notFound`. */
  readonly data: CallbackData;
  /** The output attributes under the anchor's names (not serialized with the answer). */
  readonly attributes: CallbackAttributes;
  /** The callback's latest step failure, if any step of it failed (serialized when present). */
  readonly stepError?: StepError | undefined;
}

/** How a dispatch was handled, for call-in points that map it to a protocol status. */
export type DispatchOutcome =
  /** The report was applied (status moved, data merged, step ran). */
  | 'applied'
  /** A backward or repeated `accept`/`start`: nothing changed, not an error. */
  | 'ignored'
  /** The same terminal report again: answered as a success. */
  | 'replayed'
  /** The callback is terminal with another outcome: the answer carries its current status. */
  | 'conflict'
  /** Unknown, forged or removed token. */
  | 'notFound'
  /** A read (`getCallback` or `exists`). */
  | 'read'
  /**
   * Several replicas: the callback's owner did not answer in time, so the report was queued
   * durably and is applied in order by the owner (HTTP 202). The answer is the last known state.
   */
  | 'queued';

/** A dispatch answer together with how it was handled. */
export interface DispatchResult {
  readonly answer: CallbackAnswer;
  readonly outcome: DispatchOutcome;
}

/** What a callback's creation returns. */
export interface CreatedCallback extends CallbackAnswer {
  /** The callbackId. */
  readonly id: string;
}

/**
 * What every step receives (spec 6). Through a typed anchor (`engine.anchor<...>()` or an anchor
 * with schemas), `TData` is the creation data's type, `TReport` the report data's type for the
 * step's status and `TStatus` the status itself.
 */
export interface StepInput<
  TData = CallbackData,
  TReport = CallbackData,
  TStatus extends CallbackStatus | 'notFound' = CallbackStatus | 'notFound',
> {
  /** The status the anchor resumes on. */
  readonly status: TStatus;
  readonly token: string;
  readonly id: string;
  /** The merged data so far (frozen; built on first read). */
  readonly data: TData;
  /** The data of the report that resumed the anchor (`{}` for create, timeouts and orphans). */
  readonly report: TReport;
  readonly parentToken: string | undefined;
  /** The output attributes under the anchor's names (spec 7). */
  readonly attributes: CallbackAttributes;
  /** Fires when the callback is cancelled, times out or is orphaned while this step runs. */
  readonly signal: AbortSignal;
  /** Which try of this step this is: 1 for the first, 2 for the first retry (see the `retry` option). */
  readonly attempt: number;
}

/** What a step may return: an object merged into the callback's data, or nothing. */
export type StepOutput = Record<string, unknown> | undefined | void;

/** An in-process step. */
export type StepFunction = (input: StepInput) => StepOutput | Promise<StepOutput>;

/** A step that runs on the engine's worker-thread pool. Make one with `workerStep()`. */
export interface WorkerStep {
  readonly kind: 'worker';
  /** `file:` URL of the module. */
  readonly module: string;
  /** The export to call. */
  readonly exportName: string;
  /** This step's own retry policy, or `false` for none (`workerStep(..., { retry })`). @default the anchor's */
  readonly retry?: RetryPolicy | false;
}

/** A step entry in an anchor's `next` map: a function, a worker step, or `false` for "explicitly nothing". */
export type StepEntry = StepFunction | WorkerStep | false;

/** An anchor's step map: exact statuses, group defaults `active`/`error`, and `*` (spec 6). */
export type StepMap = Partial<Record<StepKey, StepEntry>>;

/** Kinds of engine events (spec 13). */
export type EngineEventType =
  | 'created'
  | 'dispatched'
  | 'transitioned'
  | 'stepFailed'
  | 'stepRetried'
  | 'timedOut'
  | 'orphaned'
  | 'evicted'
  | 'rejected'
  /** An early event was held, claimed by its new callback, expired unclaimed, or refused (`reason`). */
  | 'early';

/** An engine event, passed to `inspect` and to subscribers. */
export interface EngineEvent {
  readonly type: EngineEventType;
  /** When it happened (the engine clock, ms since epoch). */
  readonly at: number;
  readonly id?: string;
  readonly anchor?: string;
  /** The status after the event. */
  readonly status?: AnswerStatus;
  /** For `transitioned`: the status before. */
  readonly from?: CallbackStatus;
  /** For `dispatched`: the status that was reported. */
  readonly reported?: string;
  /** For `dispatched`: how it was handled. */
  readonly outcome?: DispatchOutcome;
  /** For `timedOut`, `rejected`, `evicted`: why; for `early`: `held`, `claimed`, `expired` or `refused`. */
  readonly reason?: string;
  /** For `stepFailed` and `stepRetried`: the message. */
  readonly message?: string;
  /** For `stepRetried`: the try that failed (1 for the first). */
  readonly attempt?: number;
  /** For `stepRetried`: the wait before the next try, in ms. */
  readonly delayMs?: number;
  /** For `created`: the creation data; for `dispatched`: the report's data. */
  readonly data?: Readonly<Record<string, unknown>>;
}

/** Counters kept by the engine (spec 13). */
export interface EngineStats {
  /** Callbacks currently known, by status. */
  readonly byStatus: Readonly<Record<CallbackStatus, number>>;
  /** Callbacks currently known, by anchor and status. */
  readonly byAnchor: Readonly<Record<string, Readonly<Partial<Record<CallbackStatus, number>>>>>;
  /** Active callbacks (each with a live actor). */
  readonly active: number;
  /** Inactive callbacks still retained. */
  readonly retained: number;
  /** Active callbacks whose XState actor is live (the rest are passivated: record only). */
  readonly liveActors: number;
  /** Actors started from a record (first report, or after passivation). */
  readonly activations: number;
  /** Idle actors stopped to stay within `maxLiveActors`. */
  readonly passivations: number;
  readonly created: number;
  readonly dispatched: number;
  readonly notFound: number;
  /** Tokens whose signature did not verify. */
  readonly forgedTokens: number;
  /** Steps that failed for good (their callback moved to `error`, or kept a `stepError`). */
  readonly stepFailures: number;
  /** Failed tries of steps that were scheduled to run again (`retry` option). */
  readonly stepRetries: number;
  readonly timedOut: number;
  readonly orphaned: number;
  readonly evicted: number;
  /** Durable store: group commits (transactions) so far; 0 with the memory store. */
  readonly commits: number;
  /** Durable store: rows written or removed by those commits. */
  readonly rowsWritten: number;
  /**
   * Durable store: bytes of journal entries and snapshots written by those commits (the JSON
   * text; the database adds its own pages and indexes).
   */
  readonly bytesWritten: number;
  /** The worker pool, once a worker step started it: threads, tasks in flight, tasks queued. */
  readonly pool?: { readonly threads: number; readonly pending: number; readonly queued: number };
  /** Several replicas (`postgresStore()`): this replica's shards and forwarding counters. */
  readonly cluster?: ClusterStats;
  /** Early events (present once an anchor opted in with `early`). */
  readonly early?: EarlyEventStats;
}

/** Early-event counters, in {@link EngineStats}. */
export interface EarlyEventStats {
  /** Events held now, waiting for their callback. */
  readonly held: number;
  /** Bytes of data held now (as JSON). */
  readonly heldBytes: number;
  /** Events claimed by a new callback and applied to it. */
  readonly claimed: number;
  /** Events whose retention passed before their callback came: removed unapplied. */
  readonly expired: number;
  /** Events refused because the anchor's hold was full (`CBE_ERR_EARLY_EVENTS_FULL`). */
  readonly refused: number;
}

/** A CloudEvent that found no callback, offered to {@link CallbackEngine.holdEarly}. */
export interface EarlyEventInput {
  /** Its extension attributes (lower-case names): the correlation keys are read here. */
  readonly attributes: Readonly<Record<string, unknown>>;
  /** The event `type`, mapped to a status by an anchor's `eventTypes`. */
  readonly type: string;
  /** An explicit status (extension `callbackstatus`); wins over `eventTypes`. */
  readonly status?: string | undefined;
  /** The event data (a JSON object, or nothing). */
  readonly data?: unknown;
  /** The event's identity (`source` + `id`): a redelivered event is held once. */
  readonly dedupKey: string;
}

/** What {@link CallbackEngine.holdEarly} did with an event. */
export type EarlyHoldResult =
  /** Held (or already held: a redelivery) for this anchor until `expiresAt` (engine clock, ms). */
  | {
      readonly kind: 'queued';
      readonly anchor: string;
      readonly expiresAt: number;
      readonly duplicate: boolean;
    }
  /** A callback holding its correlation key exists now (it was created meanwhile): dispatch to it. */
  | { readonly kind: 'found'; readonly token: string }
  /** No anchor that opted in matches it (its keys or its status): answer `notFound`. */
  | { readonly kind: 'unmatched' };

/** A replica's part in a cluster, in {@link EngineStats}. */
export interface ClusterStats {
  /** Shards this replica holds a lease on. */
  readonly shards: number;
  /** Reports and creations sent to another replica. */
  readonly forwarded: number;
  /** Requests other replicas sent here. */
  readonly served: number;
  /** Reports this replica stored in the inbox (their shard had no live owner). */
  readonly queued: number;
  /** Queued reports this replica applied. */
  readonly inboxApplied: number;
  readonly leaseRounds: number;
  /** Times this replica stopped owning shards it thought it had (lease lost or expired). */
  readonly stepDowns: number;
  /** Commits refused by the lease fence (nothing of them was written). */
  readonly fenced: number;
}

/** A callback in a {@link ListPage}. */
export interface ListedCallback {
  readonly id: string;
  readonly token: string;
  readonly anchor: string;
  readonly status: CallbackStatus;
  readonly tags: readonly string[];
  readonly createdAt: number;
  readonly data: CallbackData;
}

/** One callback as `engine.details()` shows it: its record, for admin views. */
export interface CallbackDetails {
  readonly id: string;
  readonly token: string;
  readonly anchor: string;
  readonly status: CallbackStatus;
  /** The merged data. */
  readonly data: CallbackData;
  readonly tags: readonly string[];
  /** When it was created (ms since epoch). */
  readonly createdAt: number;
  /** When a report last reached it while active (ms since epoch), if known. */
  readonly lastActivityAt: number | undefined;
  /** Its absolute deadline (ms since epoch), if any. */
  readonly deadlineAt: number | undefined;
  /** Its heartbeat window in ms, if any. */
  readonly heartbeatMs: number | undefined;
  /** When its record is removed (ms since epoch); `undefined` while active or if kept forever. */
  readonly removeAt: number | undefined;
  /** The parent's id, if it is a child. */
  readonly parentId: string | undefined;
  /** Its children's ids, in creation order. */
  readonly children: readonly string[];
  /** The latest step failure, if any. */
  readonly stepError: StepError | undefined;
  /** A failed step waiting for its next try (`retry` option): its status, try number and instant. */
  readonly pendingRetry?:
    { readonly status: CallbackStatus; readonly attempt: number; readonly at: number } | undefined;
}

/** One page of {@link CallbackEngine.list}. */
export interface ListPage {
  readonly items: readonly ListedCallback[];
  /** Pass it back to get the next page; absent on the last page. */
  readonly cursor?: string;
  /** With `list({ total: true })`: how many callbacks the filters match on all pages. */
  readonly total?: number;
}

/** Options of {@link CallbackEngine.wait}. */
export interface WaitOptions {
  /** Aborting it rejects the wait with the signal's reason. */
  signal?: AbortSignal;
  /** Also wait until every child (and their children) is terminal. @default false */
  children?: boolean;
}
