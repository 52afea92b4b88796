/**
 * The routing of one engine: every callback is in its registry (in memory, or read back from
 * its store), and every report goes to that callback's mailbox.
 *
 * @module
 */

import { notFoundAnswer, type Answer } from '../answer.js';
import { canonicalJson, EMPTY_DATA, type CallbackData } from '../data.js';
import {
  InvalidArgumentError,
  InvalidDataError,
  NothingToRetryError,
  PoolSaturatedError,
} from '../errors.js';
import { toError } from '../thrown.js';
import type { HistoryOptions, HistoryPage } from '../history.js';
import { isTerminal, type CallbackStatus, type DispatchStatus } from '../lifecycle/statuses.js';
import { toHistory } from '../journal/journal.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import type { CreateOptions } from '../options/create.js';
import type { ResolvedEngineOptions } from '../options/engine.js';
import { Pending, type Follower, type CallbackRuntime } from '../registry/callback-runtime.js';
import { correlationKey } from '../registry/correlation.js';
import type { EventHub } from '../registry/event-hub.js';
import type { ListOptions } from '../registry/list-callbacks.js';
import type { JournalWriter } from '../mailbox/journal-writer.js';
import type { EndCause, MailboxProcessor } from '../mailbox/processor.js';
import type { CallbackRecord } from '../registry/record.js';
import type { CallbackRegistry } from '../registry/registry.js';
import type { Stats } from '../registry/stats.js';
import type { Span } from '../telemetry.js';
import { overdue } from '../timers/callback-timers.js';
import { decodeToken, newCallbackId, type TokenCodec } from '../token.js';
import type {
  CallbackAnswer,
  CallbackDetails,
  CreatedCallback,
  DispatchResult,
  EarlyEventInput,
  EarlyHoldResult,
  EngineStats,
  ListPage,
} from '../types.js';
import { createCallback, type CreateContext } from './create.js';
import type { EarlyBackend } from './early.js';
import type { FindQuery, ReportOptions, Routing, WaitFor } from './routing.js';

/** What the local routing is made of. */
export interface LocalDeps {
  readonly options: ResolvedEngineOptions;
  readonly codec: TokenCodec;
  readonly anchors: ReadonlyMap<string, ResolvedAnchor>;
  readonly stats: Stats;
  readonly events: EventHub;
  readonly registry: CallbackRegistry;
  readonly mailboxes: MailboxProcessor;
  /** The next creation sequence number. */
  nextSeq(): number;
}

/** What a clustered routing changes in the local one (see `cluster/`). */
export interface LocalHooks {
  /** A new callbackId in a shard this replica owns (a child in its parent's). */
  newId?(parentId: string | undefined): string;
  /** A callback found by its idempotency key, owned elsewhere with its create step owed. */
  elsewhere?(record: CallbackRecord, options: CreateOptions): Promise<CreatedCallback> | undefined;
}

const toAnswer = (r: DispatchResult): CallbackAnswer => r.answer;

/**
 * Why a report's data may not be applied to a callback: it carries keys of the callback's
 * creation data with another value, and its anchor does not list them in `reportable`.
 * @returns the error to refuse it with (an issue per key), or `undefined` when it may go on.
 */
export function creationFieldRefusal(
  record: CallbackRecord,
  anchor: ResolvedAnchor | undefined,
  data: CallbackData,
): InvalidDataError | undefined {
  const created = record.createdKeys;
  if (created === undefined || created.size === 0) return undefined;
  let issues: { path: string[]; message: string }[] | undefined;
  let now: CallbackData | undefined;
  for (const key of Object.keys(data)) {
    if (!created.has(key) || anchor?.reportable.has(key)) continue;
    now ??= record.data.value;
    const was = now[key];
    const sent = data[key];
    if (was === sent || (typeof sent === 'object' && canonicalJson(was) === canonicalJson(sent)))
      continue;
    (issues ??= []).push({
      path: [key],
      message: `is a creation field of this callback; a report cannot change it (list it in the anchor's reportable option to allow that)`,
    });
  }
  if (issues === undefined) return undefined;
  const keys = issues.map((i) => JSON.stringify(i.path[0]).slice(0, 60));
  return new InvalidDataError(
    `callbackData may not change the creation field${keys.length === 1 ? '' : 's'} ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', ...' : ''}`,
    { issues: issues.slice(0, 20) },
  );
}

/** A report's result as it is (shared, so no function is made per report). */
const asIs = (r: DispatchResult): DispatchResult => r;

/** One engine's callbacks, answered where they are. */
export class LocalRouting implements Routing {
  readonly #d: LocalDeps;
  readonly #o: ResolvedEngineOptions;
  readonly #registry: CallbackRegistry;
  readonly #mailboxes: MailboxProcessor;
  readonly #journal: JournalWriter;
  readonly #create: CreateContext;
  /** Early events: set once (by the engine, or by a clustered routing wrapping this one). */
  early: EarlyBackend | undefined;
  /** What a clustered routing wrapping this one changes (set by it). */
  hooks: LocalHooks = {};

  constructor(deps: LocalDeps) {
    this.#d = deps;
    this.#o = deps.options;
    this.#registry = deps.registry;
    this.#mailboxes = deps.mailboxes;
    this.#journal = deps.mailboxes.journal;
    this.#create = {
      options: deps.options,
      codec: deps.codec,
      registry: deps.registry,
      mailboxes: deps.mailboxes,
      stats: deps.stats,
      events: deps.events,
      early: () => this.early,
      nextSeq: () => deps.nextSeq(),
      newId: (parentId) => this.hooks.newId?.(parentId) ?? newCallbackId(),
      elsewhere: (record, options) => this.hooks.elsewhere?.(record, options),
    };
  }

  start(): Promise<void> {
    this.early?.start();
    return Promise.resolve();
  }

  // ---- reports ------------------------------------------------------------------------------

  report(
    token: string,
    status: CallbackStatus,
    data: CallbackData,
    options: ReportOptions = {},
  ): Promise<DispatchResult> {
    try {
      return this.reportNow(token, status, data, options);
    } catch (err) {
      // A durable store that cannot be read (a cold callback's point read): reject, never throw.
      return Promise.reject(toError(err));
    }
  }

  /** {@link report}, which may throw synchronously (a store that cannot be read). */
  reportNow(
    token: string,
    status: CallbackStatus,
    data: CallbackData,
    options: ReportOptions,
  ): Promise<DispatchResult> {
    const { dedupKey, freshKey = false, caller = false } = options;
    const found = this.#registry.find(token);
    // A report may not change what the callback was created with: refused before anything.
    if (found.kind === 'live' && data !== EMPTY_DATA && !isTerminal(found.rt.record.status)) {
      const refused = creationFieldRefusal(
        found.rt.record,
        this.#d.anchors.get(found.rt.record.anchor),
        data,
      );
      if (refused) {
        this.#d.events.rejected(refused.message);
        return Promise.reject(refused);
      }
    }
    this.#d.stats.dispatched++;
    if (found.kind === 'notFound')
      return this.#mailboxes.notFound(token, found.anchor, found.id, status);
    if (found.kind === 'retained') {
      const record = found.record;
      // A key applied to it (before it ended) makes the report a replay; else its outcome stands.
      const replay =
        dedupKey !== undefined && !freshKey && this.#journal.keys.has(undefined, record, dedupKey);
      return Promise.resolve(
        replay
          ? { answer: this.#mailboxes.answer(record), outcome: 'replayed' }
          : this.#mailboxes.settledAnswer(record, status, data),
      );
    }
    const rt = found.rt;
    if (!isTerminal(rt.record.status)) this.#touch(rt);
    const pending = new Pending('applied', asIs);
    // Read now, while what an asynchronous store fetched for this report is at hand.
    const keyStored =
      dedupKey !== undefined && !freshKey && this.#journal.keys.has(rt, rt.record, dedupKey);
    if (status === 'cancel') {
      // A cancel takes effect at once (it does not wait behind a running step).
      if (keyStored) {
        const answer = this.#mailboxes.answer(rt.record);
        this.#journal.release(
          rt,
          () => pending.resolve({ answer, outcome: 'replayed' }),
          (e) => pending.reject(e),
        );
      } else
        this.#cancelLive(
          rt,
          data,
          pending,
          caller
            ? { kind: 'cancelled' }
            : {
                kind: 'reported',
                reported: 'cancel',
                outcome: 'applied',
                activity: true,
                ...(dedupKey !== undefined ? { dedupKey } : {}),
              },
        );
      return pending.promise();
    }
    // Refuse before anything is applied, so the outside party can simply retry.
    if (this.#mailboxes.wouldSaturate(rt, status)) return Promise.reject(new PoolSaturatedError());
    // One shape for every report job (absent fields are undefined, never missing).
    this.#mailboxes.enqueue(rt, {
      kind: 'report',
      status,
      data,
      followers: [pending],
      dedupKey,
      keyStored,
      freshKey: freshKey || undefined,
      trace: options.trace as never,
    });
    return pending.promise();
  }

  /** A report reached an active callback: it times out first if its time is up, else it heard from outside. */
  #touch(rt: CallbackRuntime): void {
    const now = this.#o.clock.now();
    if (!this.#overdue(rt, now)) rt.lastActivity = now;
  }

  /**
   * Ends an active callback whose deadline or heartbeat window already passed (its timer has not
   * run yet, e.g. right after a restart): a report must not be applied after the deadline.
   * @returns whether it timed out.
   */
  #overdue(rt: CallbackRuntime, now: number): boolean {
    const reason = overdue(rt, now);
    if (reason === undefined) return false;
    this.#mailboxes.end(rt, 'timeout', { reason }, [], { kind: 'timedOut', reason });
    return true;
  }

  #cancelLive(rt: CallbackRuntime, data: CallbackData, follower: Follower, cause: EndCause): void {
    if (isTerminal(rt.record.status)) {
      const result = this.#mailboxes.settledAnswer(rt.record, 'cancel', data);
      this.#journal.release(
        rt,
        () => follower.resolve(result),
        (e) => follower.reject(e),
      );
    } else if (this.#mailboxes.admit(rt, 'cancel', data, 'cancel data', [follower]) >= 0)
      this.#mailboxes.end(rt, 'cancel', data, [follower], cause);
  }

  // ---- reads --------------------------------------------------------------------------------

  read(token: string): Promise<Answer> {
    try {
      return Promise.resolve(this.readNow(token));
    } catch (err) {
      return Promise.reject(toError(err));
    }
  }

  /** {@link read}, synchronously (on what is resident or fetched). */
  readNow(token: string): Answer {
    const found = this.#registry.find(token);
    if (found.kind === 'notFound') return notFoundAnswer(token);
    if (found.kind === 'retained') return this.#mailboxes.answer(found.record);
    const answer = this.#mailboxes.answer(found.rt.record);
    this.#registry.settle(found.rt);
    return answer;
  }

  async wait(token: string, options: WaitFor): Promise<CallbackAnswer> {
    const found = this.#registry.find(token);
    if (found.kind === 'notFound') return notFoundAnswer(token);
    const record = found.kind === 'live' ? found.rt.record : found.record;
    const answer = await this.waitFor(record.id, options.signal);
    if (options.children) await this.#waitChildren(record, options.signal);
    return answer;
  }

  async #waitChildren(record: CallbackRecord, signal: AbortSignal | undefined): Promise<void> {
    const children = record.children ?? [];
    await Promise.all(
      children.map(async (id) => {
        await this.waitFor(id, signal);
        const child = this.#registry.record(id);
        if (child) await this.#waitChildren(child, signal);
      }),
    );
  }

  /** Waits, event-driven, for a resident callback to end. */
  waitFor(id: string, signal: AbortSignal | undefined): Promise<CallbackAnswer> {
    const rt = this.#registry.runtime(id);
    if (!rt || rt.finalized) {
      const record = rt?.record ?? this.#registry.record(id);
      const answer = record ? this.#mailboxes.answer(record) : notFoundAnswer('');
      return new Promise((resolve, reject) =>
        this.#journal.release(rt, () => resolve(answer), reject),
      );
    }
    signal?.throwIfAborted();
    return new Promise<CallbackAnswer>((resolve, reject) => {
      const onAbort = () => {
        rt.waiters = rt.waiters?.filter((w) => w !== waiter);
        this.#registry.settle(rt);
        reject(toError(signal?.reason));
      };
      const waiter: Follower = {
        resolve: (r) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(r.answer);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        outcome: 'read',
      };
      (rt.waiters ??= []).push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---- creating -----------------------------------------------------------------------------

  create(
    anchor: ResolvedAnchor,
    options: CreateOptions,
    checkedData: CallbackData | undefined,
    span: Span | undefined,
  ): Promise<CreatedCallback> {
    return createCallback(this.#create, anchor, options, checkedData, span);
  }

  // ---- finding and listing ------------------------------------------------------------------

  async findToken(query: FindQuery): Promise<string | undefined> {
    if ('id' in query) {
      if (typeof query.id !== 'string') return undefined;
      await this.#registry.warm({ ids: [query.id] });
      return this.#registry.record(query.id)?.token;
    }
    for (const anchor of this.#d.anchors.values()) {
      const key = correlationKey(anchor, (k) => query.attributes[k.toLowerCase()]);
      if (key === undefined) continue;
      await this.#registry.warm({ correlationKey: key });
      const id = this.#registry.byCorrelationKey(key);
      const token = id === undefined ? undefined : this.#registry.record(id)?.token;
      if (token !== undefined) return token;
    }
    return undefined;
  }

  list(options: ListOptions): Promise<ListPage> {
    try {
      return Promise.resolve(this.#registry.list(options));
    } catch (err) {
      return Promise.reject(toError(err));
    }
  }

  async details(id: string): Promise<CallbackDetails | undefined> {
    if (typeof id !== 'string' || id.length === 0) return undefined;
    await this.#registry.warm({ ids: [id] });
    const found = this.#registry.details(id);
    return found && detailsOf(found.record, found.lastActivity, found.children);
  }

  async history(tokenOrId: string, options: HistoryOptions): Promise<HistoryPage> {
    const limit = options.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000)
      throw new InvalidArgumentError(
        `history() options.limit must be an integer from 1 to 1000 (got ${String(limit)})`,
      );
    const cursor = options.cursor;
    if (cursor !== undefined && (typeof cursor !== 'string' || !/^[0-9]{1,15}$/.test(cursor)))
      throw new InvalidArgumentError(
        `history() options.cursor must be the cursor of a previous page (got ${JSON.stringify(String(cursor)).slice(0, 60)})`,
      );
    const fields = decodeToken(tokenOrId);
    // A token must verify; an id is taken as it is (the caller is trusted, like details()).
    const id = fields ? (this.#d.codec.verify(fields) ? fields.id : undefined) : tokenOrId;
    if (id === undefined) return { id: '', entries: [], cursor: undefined };
    const after = cursor === undefined ? 0 : Number(cursor);
    const entries = await this.#registry.history(id, after, limit + 1);
    const page = entries.slice(0, limit).map(toHistory);
    return {
      id,
      entries: page,
      cursor: entries.length > limit ? String(page[page.length - 1]!.seq) : undefined,
    };
  }

  // ---- retrying a failed final step ---------------------------------------------------------

  async retryStep(tokenOrId: string): Promise<CallbackAnswer> {
    const fields = decodeToken(tokenOrId);
    // A token must verify; an id is taken as it is (the caller is trusted, like list()).
    const id = fields?.id ?? tokenOrId;
    await this.#registry.warm({ ids: [id] });
    if (fields && this.#registry.find(tokenOrId).kind === 'notFound')
      throw new NothingToRetryError(fields.id, 'it is unknown or its record was removed');
    const found = this.#registry.details(id);
    if (!found) throw new NothingToRetryError(id, 'it is unknown or its record was removed');
    const rt = this.#registry.runtime(id);
    return this.#mailboxes
      .retryStep(rt, rt?.record ?? found.record, found.lastActivity)
      .then(toAnswer);
  }

  // ---- early events -------------------------------------------------------------------------

  async holdEarly(
    event: EarlyEventInput,
    status: DispatchStatus | undefined,
  ): Promise<EarlyHoldResult> {
    const early = this.early;
    if (!early) return { kind: 'unmatched' };
    const { attributes, type } = event;
    for (const anchor of this.#d.anchors.values()) {
      if (!anchor.early) continue;
      const key = correlationKey(anchor, (k) => attributes[k.toLowerCase()]);
      const st = status ?? anchor.eventTypes[type];
      if (key === undefined || st === undefined) continue;
      return early.hold(
        anchor as Parameters<EarlyBackend['hold']>[0],
        key,
        st,
        event.data as CallbackData,
        event.dedupKey,
      );
    }
    return { kind: 'unmatched' };
  }

  stats(): Pick<EngineStats, 'early'> {
    const early = this.early;
    const on = [...this.#d.anchors.values()].some((a) => a.early);
    return early && on ? { early: early.stats() } : {};
  }

  leave(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.early?.close();
    return Promise.resolve();
  }
}

/** A record as the details admin views read. */
export function detailsOf(
  record: CallbackRecord,
  lastActivity: number | undefined,
  children: readonly string[],
): CallbackDetails {
  return {
    id: record.id,
    token: record.token,
    anchor: record.anchor,
    status: record.status,
    data: record.data.value,
    tags: record.tags,
    createdAt: record.createdAt,
    lastActivityAt: lastActivity,
    deadlineAt: record.deadlineAt,
    heartbeatMs: record.heartbeatMs,
    removeAt: record.removeAt,
    parentId: record.parentId,
    children: [...children],
    stepError: record.stepError,
    pendingRetry:
      record.owed?.at === undefined
        ? undefined
        : { status: record.owed.step, attempt: record.owed.attempt, at: record.owed.at },
  };
}
