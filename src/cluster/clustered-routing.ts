/**
 * The routing of one replica of a cluster (engines sharing a `postgresStore()` schema): reports
 * for callbacks in the shards it leases go to its own local routing; the rest are handed to
 * their owner (or queued durably for the next one). Reads of another replica's callbacks are
 * answered from the database. One callback's rules stay in the local routing.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { CreatedAnswer, notFoundAnswer, type Answer } from '../answer.js';
import { ingestData, type CallbackData } from '../data.js';
import { CallbackEngineError, LeaseLostError, StoreUnavailableError } from '../errors.js';
import type { HistoryOptions, HistoryPage } from '../history.js';
import { isTerminal, type CallbackStatus, type DispatchStatus } from '../lifecycle/statuses.js';
import { DEFAULTS } from '../options/defaults.js';
import type { CreateOptions } from '../options/create.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import { correlationKey } from '../registry/correlation.js';
import { listStoredAsync, type ListOptions } from '../registry/list-callbacks.js';
import { decodeRecord } from '../registry/record-codec.js';
import { SharedEarly } from '../routing/early.js';
import { detailsOf, type LocalRouting } from '../routing/local.js';
import type { RoutingContext } from '../routing/provider.js';
import type { FindQuery, ReportOptions, Routing, WaitFor } from '../routing/routing.js';
import type { PostgresStore } from '../store/postgres/store.js';
import { shardOf } from '../store/shards.js';
import type { Span } from '../telemetry.js';
import { decodeToken } from '../token.js';
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
import { Cluster } from './cluster.js';
import { SharedEarlyEvents } from './early-events.js';
import { errorReply, resultOf, type ForwardReply, type ForwardRequest } from './forward.js';
import { notOwned, type Leases } from './leases.js';

/** How a report reached the owner of its callback. */
interface Owned {
  readonly dedupKey: string | undefined;
  /** The key was minted for this delivery (no lookup). */
  readonly minted?: boolean;
  /** When it arrived: refused if this replica's view lapsed since (see `Leases.checkFresh`). */
  readonly arrivedAt?: number;
  readonly caller?: boolean;
}

/** One engine's part in a cluster: its routing. */
export class ClusteredRouting implements Routing {
  readonly #store: PostgresStore;
  readonly #cluster: Cluster;
  readonly #leases: Leases;
  readonly #local: LocalRouting;
  readonly #ctx: RoutingContext;
  readonly #shared: SharedEarlyEvents;
  /** Per callback, the admission of the latest report (arrival order). */
  readonly #gates = new Map<string, Promise<void>>();
  /** Per callback, the last report this replica forwards (one at a time, in arrival order). */
  readonly #routes = new Map<string, Promise<void>>();

  constructor(store: PostgresStore, local: LocalRouting, ctx: RoutingContext) {
    this.#store = store;
    this.#local = local;
    this.#ctx = ctx;
    this.#cluster = new Cluster(store, ctx.node);
    this.#leases = this.#cluster.leases;
    this.#shared = new SharedEarlyEvents(store, ctx.options.clock, ctx.events, {
      dispatch: (token, status, data, dedupKey) => this.report(token, status, data, { dedupKey }),
      ownedShards: () => this.#leases.ownedShards,
      parse: (json) => ingestData('early event data', JSON.parse(json), Number.MAX_SAFE_INTEGER),
    });
    local.early = new SharedEarly(this.#shared, ctx.mailboxes.journal, ctx.events, (t, st, d, o) =>
      local.report(t, st, d, o),
    );
    local.hooks = {
      newId: (parentId) => this.#leases.newId(parentId),
      // Another replica owns it and its create step is still owed: its owner answers, once that
      // step ran (a retry of a create cut off by a crash waits for it, whichever replica it reaches).
      elsewhere: (record, options) =>
        record.owed !== undefined && !this.#cluster.owns(record.id)
          ? this.#createAt(record.id, record.anchor, options)
          : undefined,
    };
  }

  /** Joins the cluster (see {@link Cluster.start}), then takes up held early events. */
  async start(): Promise<void> {
    const n = this.#store.cluster.shards;
    await this.#cluster.start({
      serve: (request, inboxSeq) => this.#serve(request, inboxSeq),
      ownershipChanged: () => this.#ownershipChanged(),
      resumeOwed: async (shards) => {
        const ids = await this.#store.owedAsync(shards);
        // In the turn that fetched them: each becomes resident with its owed step in front.
        this.#ctx.registry.resumeOwed(ids);
      },
      quiesce: (shards, timeoutMs) => {
        const set = new Set(shards);
        return this.#ctx.mailboxes.quiesce((id) => set.has(shardOf(id, n)), timeoutMs);
      },
      handoverTimeoutMs: this.#ctx.options.closeTimeoutMs,
      flush: () => this.#ctx.mailboxes.journal.flush(),
      warn: this.#ctx.events.warn,
    });
    this.#local.early?.start();
  }

  /** Hands every shard over (graceful close). */
  async leave(): Promise<void> {
    await this.#cluster.leave();
  }

  async close(): Promise<void> {
    this.#shared.close();
    await this.#cluster.close();
  }

  stats(): Pick<EngineStats, 'early'> & { cluster: ClusterStats } {
    return { ...this.#local.stats(), cluster: this.#cluster.stats };
  }

  /** Whether this replica may hold the callback in memory: it leases its shard. */
  mayHold(id: string): boolean {
    return this.#leases.ownsShard(shardOf(id, this.#store.cluster.shards));
  }

  /** A verified token's callbackId, or `undefined` (malformed or forged: one engine's answer). */
  #idOf(token: string): { id: string; anchor: string } | undefined {
    return this.#ctx.registry.verifiedFields(token);
  }

  // ---- reports ------------------------------------------------------------------------------

  /** A report at any replica: applied here if this replica owns the callback, else at its owner. */
  async report(
    token: string,
    status: CallbackStatus,
    data: CallbackData,
    options: ReportOptions = {},
  ): Promise<DispatchResult> {
    const { dedupKey, caller = false } = options;
    const fields = this.#idOf(token);
    // A malformed or forged token is answered here, as by one engine (no store read).
    if (!fields) return this.#local.report(token, status, data);
    // A report that waits while this replica's view of the cluster lapses (the replica froze) is
    // refused, never applied or forwarded late.
    const arrivedAt = performance.now();
    this.#leases.checkFresh(arrivedAt);
    if (this.#cluster.owns(fields.id)) {
      // Reports queued while its shard had no owner go first.
      await this.#cluster.settled(fields.id);
      return this.#ownedReport(token, fields.id, status, data, { dedupKey, arrivedAt, caller });
    }
    // Handed to another replica, one report of a callback at a time (routing may have to learn
    // the owner first, so two in flight could overtake each other). A key makes a retry through
    // the inbox apply it once.
    const request: ForwardRequest = {
      op: 'report',
      id: fields.id,
      token,
      status,
      data,
      ...(dedupKey === undefined ? { dedupKey: randomUUID(), minted: true } : { dedupKey }),
      ...(caller ? { caller: true } : {}),
    };
    const reply = await this.#oneAtATime(fields.id, () =>
      this.#cluster.route(fields.id, request, arrivedAt),
    );
    if (reply.kind === 'queued') return { answer: await this.read(token), outcome: 'queued' };
    return this.#fromReply(reply, fields.anchor, token);
  }

  /** Runs `fn` after every earlier call for the same callback settled. */
  #oneAtATime<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#routes.get(id);
    const run = prev ? prev.then(fn, fn) : fn();
    const tail = run.then(
      () => {},
      () => {},
    );
    this.#routes.set(id, tail);
    void tail.then(() => {
      if (this.#routes.get(id) === tail) this.#routes.delete(id);
    });
    return run;
  }

  /**
   * Admits reports for one callback in the order they arrived, although each may first await
   * the store (its row, its deduplication key, its active subtree): the next one starts once
   * this one is in the mailbox, which then applies them one at a time.
   */
  async #inOrder(
    id: string,
    admit: () => Promise<{ readonly result: Promise<DispatchResult> }>,
  ): Promise<DispatchResult> {
    const prev = this.#gates.get(id);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    this.#gates.set(id, gate);
    let admitted: { readonly result: Promise<DispatchResult> };
    try {
      if (prev) await prev;
      admitted = await admit();
    } finally {
      open();
      if (this.#gates.get(id) === gate) this.#gates.delete(id);
    }
    return admitted.result;
  }

  /**
   * A report at the owner of its callback, applied in arrival order. What its synchronous path
   * reads is fetched first: the row, its deduplication key (unless minted for this delivery),
   * and for a terminal status the active subtree it orphans.
   */
  #ownedReport(
    token: string,
    id: string,
    status: CallbackStatus,
    data: CallbackData,
    how: Owned,
  ): Promise<DispatchResult> {
    const { dedupKey, minted = false, arrivedAt, caller = false } = how;
    return this.#inOrder(id, async () => {
      const unpin = this.#ctx.registry.pin(id);
      try {
        await this.#ctx.registry.warm({
          ids: [id],
          ...(isTerminal(status) ? { subtree: true } : {}),
          ...(dedupKey !== undefined && !minted ? { keys: [{ id, key: dedupKey }] } : {}),
        });
        if (arrivedAt !== undefined) this.#leases.checkFresh(arrivedAt);
        if (!this.#cluster.owns(id)) throw notOwned();
        return {
          result: this.#local.report(token, status, data, { dedupKey, freshKey: minted, caller }),
        };
      } finally {
        unpin();
      }
    });
  }

  // ---- reads --------------------------------------------------------------------------------

  /** Reads a callback from any replica: from memory at its owner, else as committed. */
  async read(token: string): Promise<Answer> {
    const fields = this.#idOf(token);
    if (!fields) return this.#local.readNow(token);
    if (this.#cluster.owns(fields.id)) {
      await this.#ctx.registry.warm({ ids: [fields.id] });
      return this.#local.readNow(token);
    }
    const row = await this.#store.read(fields.id);
    if (!row || row.anchor !== fields.anchor) {
      this.#ctx.stats.notFound++;
      return notFoundAnswer(token);
    }
    return this.#ctx.mailboxes.answer(decodeRecord(row).record);
  }

  /** wait() from any replica: event-driven at the owner, polling the store elsewhere. */
  async wait(token: string, options: WaitFor): Promise<CallbackAnswer> {
    const fields = this.#idOf(token);
    if (!fields) return this.#local.readNow(token);
    const poll = Math.min(250, this.#store.cluster.renewIntervalMs);
    let answer: CallbackAnswer;
    for (;;) {
      options.signal?.throwIfAborted();
      if (this.#ctx.closed()) throw new StoreUnavailableError('the engine closed while waiting');
      if (this.#cluster.owns(fields.id)) {
        await this.#ctx.registry.warm({ ids: [fields.id] });
        try {
          answer = await this.#local.waitFor(fields.id, options.signal);
          break;
        } catch (err) {
          // Ownership moved while waiting: wait from the store instead.
          if (!(err instanceof LeaseLostError)) throw err;
          continue;
        }
      }
      answer = await this.read(token);
      if (answer.status === 'notFound' || isTerminal(answer.status)) break;
      await new Promise<void>((resolve) => setTimeout(resolve, poll));
    }
    if (options.children)
      for (const row of await this.#store.childrenRows(fields.id))
        await this.wait(decodeRecord(row).record.token, options);
    return answer;
  }

  async findToken(query: FindQuery): Promise<string | undefined> {
    if ('id' in query) {
      if (typeof query.id !== 'string') return undefined;
      const row = await this.#store.read(query.id);
      return row && decodeRecord(row).record.token;
    }
    for (const anchor of this.#ctx.anchors.values()) {
      const key = correlationKey(anchor, (k) => query.attributes[k.toLowerCase()]);
      const row = key === undefined ? undefined : await this.#store.readByCorrelation(key);
      if (row) return decodeRecord(row).record.token;
    }
    return undefined;
  }

  list(options: ListOptions): Promise<ListPage> {
    return listStoredAsync(
      options,
      (q) => this.#store.listAsync(q),
      (row) => decodeRecord(row).record,
      (q) => this.#store.countAsync(q),
    );
  }

  async details(id: string): Promise<CallbackDetails | undefined> {
    if (typeof id !== 'string' || id.length === 0) return undefined;
    // At its owner, as it is in memory; elsewhere as committed.
    if (this.#ctx.registry.resident(id) !== undefined) return this.#local.details(id);
    const row = await this.#store.read(id);
    if (!row) return undefined;
    const children = (await this.#store.childrenRows(id)).map((r) => r.id);
    const { record, lastActivity } = decodeRecord(row);
    return detailsOf(record, lastActivity, children);
  }

  history(tokenOrId: string, options: HistoryOptions): Promise<HistoryPage> {
    return this.#local.history(tokenOrId, options);
  }

  // ---- creating, retrying, early events ----------------------------------------------------

  /** Creates a callback; a child of a callback another replica owns is created by that owner. */
  async create(
    anchor: ResolvedAnchor,
    options: CreateOptions,
    checkedData: CallbackData | undefined,
    span: Span | undefined,
  ): Promise<CreatedCallback> {
    // The parent's owner creates the child (same shard: one owner for the family).
    const parentId = decodeToken(options.parentToken)?.id;
    if (parentId !== undefined && !this.#cluster.owns(parentId))
      return this.#createAt(parentId, anchor.name, options);
    return this.#local.create(anchor, options, checkedData, span);
  }

  /** A create done by the owner of `id` (a parent's, or an existing callback's). */
  async #createAt(id: string, anchor: string, options: CreateOptions): Promise<CreatedCallback> {
    const reply = await this.#cluster.route(id, { op: 'create', id, anchor, options });
    const result = this.#fromReply(reply, anchor, '');
    if (reply.kind !== 'answer' || reply.id === undefined)
      throw new StoreUnavailableError(
        'the owner of the callback did not answer the creation; retry',
      );
    return new CreatedAnswer(
      result.answer as Answer,
      reply.id,
      this.#ctx.anchors.get(anchor)?.attributes ?? DEFAULTS.attributes,
      typeof options.parentToken === 'string' ? options.parentToken : undefined,
    );
  }

  /** Runs a terminal callback's failed final step again, at its owner. */
  async retryStep(tokenOrId: string): Promise<CallbackAnswer> {
    const id = decodeToken(tokenOrId)?.id ?? tokenOrId;
    if (this.#cluster.owns(id)) return this.#local.retryStep(tokenOrId);
    const reply = await this.#cluster.route(id, { op: 'retry', id, tokenOrId });
    return this.#fromReply(reply, decodeToken(tokenOrId)?.anchor ?? '', tokenOrId).answer;
  }

  holdEarly(event: EarlyEventInput, status: DispatchStatus | undefined): Promise<EarlyHoldResult> {
    return this.#local.holdEarly(event, status);
  }

  // ---- the owner's side ---------------------------------------------------------------------

  /** Serves a request forwarded by another replica, or queued in the inbox. */
  async #serve(request: ForwardRequest, inboxSeq?: number): Promise<ForwardReply> {
    if (!this.#cluster.owns(request.id) || this.#ctx.closed()) return { kind: 'notOwner' };
    let reply: ForwardReply;
    try {
      if (request.op === 'retry') {
        const answer = (await this.#local.retryStep(request.tokenOrId)) as Answer;
        reply = { kind: 'answer', outcome: 'applied', answer: answer.toJSON() };
      } else if (request.op === 'create') {
        const anchor = this.#ctx.anchors.get(request.anchor);
        if (!anchor)
          throw new CallbackEngineError(
            'CBE_ERR_UNKNOWN_ANCHOR',
            400,
            `anchor "${request.anchor}" is not registered on the replica that owns its parent`,
          );
        const created = await this.#local.create(
          anchor,
          request.options as CreateOptions,
          undefined,
          undefined,
        );
        reply = {
          kind: 'answer',
          outcome: 'applied',
          answer: (created as unknown as Answer).toJSON(),
          id: created.id,
        };
      } else {
        // Sent by a replica whose view of the cluster has ended since (it froze after sending):
        // refused, never applied late (a queued copy was checked when it was queued).
        if (
          inboxSeq === undefined &&
          request.notAfter !== undefined &&
          Date.now() > request.notAfter
        )
          throw new StoreUnavailableError(
            'the replica that forwarded this report was cut off from the cluster before it arrived; it was not applied: retry',
          );
        // Reports queued for this shard go first (unless this is one of them).
        if (inboxSeq === undefined) await this.#cluster.settled(request.id);
        const data = ingestData('callbackData', request.data, this.#ctx.options.maxDataBytes);
        const r = await this.#ownedReport(
          request.token,
          request.id,
          request.status as CallbackStatus,
          data,
          {
            dedupKey: request.dedupKey,
            // A minted key is new unless this is the queued copy of a forward that timed out.
            minted: request.minted === true && inboxSeq === undefined,
            caller: request.caller === true,
          },
        );
        reply = { kind: 'answer', outcome: r.outcome, answer: (r.answer as Answer).toJSON() };
      }
    } catch (err) {
      if (err instanceof LeaseLostError) return { kind: 'notOwner' };
      reply = errorReply(err);
    }
    // A queued report is done unless it may succeed later.
    if (inboxSeq !== undefined && !(reply.kind === 'error' && reply.retryable))
      this.#ctx.mailboxes.journal.inboxDone(inboxSeq);
    return reply;
  }

  /** The owner's reply as this engine's own result (its answer, or its error). */
  #fromReply(reply: ForwardReply, anchor: string, token: string): DispatchResult {
    return resultOf(reply, this.#ctx.anchors.get(anchor)?.attributes, token);
  }

  /** The shards this replica owns changed: forget the others, recount, re-read due times. */
  async #ownershipChanged(): Promise<void> {
    const n = this.#store.cluster.shards;
    this.#ctx.registry.disown((id) => this.#leases.ownsShard(shardOf(id, n)), notOwned());
    try {
      this.#ctx.stats.resetCounts(await this.#store.shardCounts(this.#leases.ownedShards));
    } catch (err) {
      this.#ctx.events.warn(err);
    }
    this.#ctx.registry.timers.poke();
    // Held events whose callback is in a shard taken over (their claim never committed).
    if ([...this.#ctx.anchors.values()].some((a) => a.early)) void this.#shared.reclaim();
  }
}
