/**
 * The engine as one replica of a cluster (a `postgresStore()`): which reports
 * it applies itself (those of callbacks in the shards it leases), which it
 * hands to their owner, how it answers for another replica, and how it reads
 * any replica's callbacks from the database. The engine delegates here; the
 * rules of one callback stay in the engine's own report path.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { Answer, CreatedAnswer, notFoundAnswer } from '../answer.js';
import { DataVersion, ingestData, type CallbackData } from '../data.js';
import { CallbackEngineError, LeaseLostError, StoreUnavailableError } from '../errors.js';
import { isTerminal, type CallbackStatus } from '../lifecycle/statuses.js';
import { DEFAULTS, type CreateOptions, type ResolvedAttributes } from '../options.js';
import type { CallbackRecord } from '../registry/record.js';
import { decodeRecord } from '../registry/record-codec.js';
import type { CallbackRegistry } from '../registry/registry.js';
import type { Stats } from '../registry/stats.js';
import type { PostgresStore } from '../store/postgres.js';
import { shardOf } from '../store/shards.js';
import { decodeToken, newCallbackId, type TokenCodec } from '../token.js';
import type { CallbackAnswer, ClusterStats, CreatedCallback, DispatchResult } from '../types.js';
import {
  Cluster,
  errorReply,
  notOwned,
  type ForwardReply,
  type ForwardRequest,
} from './cluster.js';

/** What a replica needs from its engine. */
export interface ReplicaHost {
  readonly node: string;
  readonly registry: CallbackRegistry;
  readonly stats: Stats;
  readonly codec: TokenCodec;
  readonly maxDataBytes: number;
  /** Reports an error of a background task (the engine's logger). */
  readonly warn: (err: unknown) => void;
  /**
   * The engine's own report path: one callback's rules, on a resident or fetched callback.
   * `freshKey`: the deduplication key was minted for this very delivery (no store can have it);
   * `caller`: a cancel by the engine's own caller (`engine.cancel()`), not by an outside party.
   */
  report(
    token: string,
    status: CallbackStatus,
    data: CallbackData,
    dedupKey?: string,
    freshKey?: boolean,
    caller?: boolean,
  ): Promise<DispatchResult>;
  /** Reads a resident or fetched callback (or answers `notFound`). */
  read(token: string): Answer;
  /** The answer of a record. */
  answer(record: CallbackRecord): Answer;
  /** Waits, event-driven, for a resident callback to end. */
  waitLocal(id: string, signal: AbortSignal | undefined): Promise<CallbackAnswer>;
  create(anchor: string, options: CreateOptions): Promise<CreatedCallback>;
  /** An anchor's output attribute names. */
  attributes(anchor: string): ResolvedAttributes | undefined;
  readonly closed: boolean;
  /** The set of owned shards changed (after the replica recounted); for work kept per shard. */
  ownershipChanged?(): void;
  /**
   * Waits (at most `timeoutMs`) until no step of a resident callback matching `owned` runs.
   */
  quiesce(owned: (id: string) => boolean, timeoutMs: number): Promise<void>;
  /** How long a handover waits for running steps (the engine's `closeTimeout`). */
  readonly closeTimeoutMs: number;
}

/** One engine's part in a cluster. */
export class Replica {
  readonly #store: PostgresStore;
  readonly #cluster: Cluster;
  readonly #host: ReplicaHost;
  /** Per callback, the admission of the latest report (arrival order). */
  readonly #gates = new Map<string, Promise<void>>();
  /** Per callback, the last report this replica forwards (one at a time, in arrival order). */
  readonly #routes = new Map<string, Promise<void>>();

  constructor(store: PostgresStore, host: ReplicaHost) {
    this.#store = store;
    this.#host = host;
    this.#cluster = new Cluster(store, host.node);
  }

  /** Joins the cluster (see {@link Cluster.start}). */
  start(): Promise<void> {
    const n = this.#store.cluster.shards;
    return this.#cluster.start({
      serve: (request, inboxSeq) => this.#serve(request, inboxSeq),
      ownershipChanged: () => this.#ownershipChanged(),
      resumeOwed: async (shards) => {
        const ids = await this.#store.owedAsync(shards);
        // In the turn that fetched them: each becomes resident with its owed step in front.
        this.#host.registry.resumeOwed(ids);
      },
      quiesce: (shards, timeoutMs) => {
        const set = new Set(shards);
        return this.#host.quiesce((id) => set.has(shardOf(id, n)), timeoutMs);
      },
      handoverTimeoutMs: this.#host.closeTimeoutMs,
      flush: () => this.#host.registry.flush(),
      warn: this.#host.warn,
    });
  }

  /** Hands every shard over (graceful close), then closes the transport. */
  async leave(): Promise<void> {
    await this.#cluster.leave();
  }

  close(): Promise<void> {
    return this.#cluster.close();
  }

  get stats(): ClusterStats {
    return this.#cluster.stats;
  }

  /** Whether this replica owns the callback now. */
  owns(id: string): boolean {
    return this.#cluster.owns(id);
  }

  /** Whether this replica may hold the callback in memory: it leases its shard. */
  ownsShardOf(id: string): boolean {
    return this.#cluster.ownsShard(shardOf(id, this.#store.cluster.shards));
  }

  /** The shards this replica owns now. */
  get ownedShards(): number[] {
    return this.#cluster.ownedShards;
  }

  /** A new callbackId in a shard this replica owns (the parent's shard for a child). */
  newId(parentId: string | undefined): string {
    const n = this.#store.cluster.shards;
    const owned = new Set(this.#cluster.ownedShards);
    const want = parentId === undefined ? undefined : shardOf(parentId, n);
    if (owned.size === 0 || (want !== undefined && !owned.has(want))) throw notOwned();
    // Expected tries: shards / owned shards (or shards, for a child); each is a few hundred ns.
    for (;;) {
      const id = newCallbackId();
      const shard = shardOf(id, n);
      if (want === undefined ? owned.has(shard) : shard === want) return id;
    }
  }

  /** A verified token's callbackId, or `undefined` (malformed or forged: one engine's answer). */
  #idOf(token: string): { id: string; anchor: string } | undefined {
    const fields = decodeToken(token);
    return fields && this.#host.codec.verify(fields) ? fields : undefined;
  }

  /**
   * A report at any replica: applied here if this replica owns the callback, else at its owner.
   * `caller`: a cancel by the engine's own caller (`engine.cancel()`).
   */
  async report(
    token: string,
    status: CallbackStatus,
    data: CallbackData,
    dedupKey: string | undefined,
    caller = false,
  ): Promise<DispatchResult> {
    const fields = this.#idOf(token);
    // A malformed or forged token is answered here, as by one engine (no store read).
    if (!fields) return this.#host.report(token, status, data);
    // A report that waits while this replica's view of the cluster lapses (the replica froze) is
    // refused, never applied or forwarded late.
    const arrivedAt = performance.now();
    this.#cluster.checkFresh(arrivedAt);
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
    how: {
      readonly dedupKey: string | undefined;
      /** The key was minted for this delivery (no lookup). */
      readonly minted?: boolean;
      /** When it arrived: refused if this replica's view lapsed since (see `Cluster.checkFresh`). */
      readonly arrivedAt?: number;
      readonly caller?: boolean;
    },
  ): Promise<DispatchResult> {
    const { dedupKey, minted = false, arrivedAt, caller = false } = how;
    return this.#inOrder(id, async () => {
      const unpin = this.#host.registry.pin(id);
      try {
        await this.#host.registry.warm({
          ids: [id],
          ...(isTerminal(status) ? { subtree: true } : {}),
          ...(dedupKey !== undefined && !minted ? { keys: [{ id, key: dedupKey }] } : {}),
        });
        if (arrivedAt !== undefined) this.#cluster.checkFresh(arrivedAt);
        if (!this.#cluster.owns(id)) throw notOwned();
        return { result: this.#host.report(token, status, data, dedupKey, minted, caller) };
      } finally {
        unpin();
      }
    });
  }

  /** Reads a callback from any replica: from memory at its owner, else as committed. */
  async read(token: string): Promise<Answer> {
    const fields = this.#idOf(token);
    if (!fields) return this.#host.read(token);
    if (this.#cluster.owns(fields.id)) {
      await this.#host.registry.warm({ ids: [fields.id] });
      return this.#host.read(token);
    }
    const row = await this.#store.read(fields.id);
    if (!row || row.anchor !== fields.anchor) {
      this.#host.stats.notFound++;
      return notFoundAnswer(token);
    }
    return this.#host.answer(decodeRecord(row).record);
  }

  /** wait() from any replica: event-driven at the owner, polling the store elsewhere. */
  async wait(
    token: string,
    options: { signal?: AbortSignal; children?: boolean },
  ): Promise<CallbackAnswer> {
    const fields = this.#idOf(token);
    if (!fields) return this.#host.read(token);
    const poll = Math.min(250, this.#store.cluster.renewIntervalMs);
    let answer: CallbackAnswer;
    for (;;) {
      options.signal?.throwIfAborted();
      if (this.#host.closed) throw new StoreUnavailableError('the engine closed while waiting');
      if (this.#cluster.owns(fields.id)) {
        await this.#host.registry.warm({ ids: [fields.id] });
        try {
          answer = await this.#host.waitLocal(fields.id, options.signal);
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

  /** A child of a callback another replica owns: its parent's owner creates it. */
  async createAt(
    parentId: string,
    anchor: string,
    options: CreateOptions,
  ): Promise<CreatedCallback> {
    const reply = await this.#cluster.route(parentId, {
      op: 'create',
      id: parentId,
      anchor,
      options,
    });
    const result = this.#fromReply(reply, anchor, '');
    if (reply.kind !== 'answer' || reply.id === undefined)
      throw new StoreUnavailableError('the owner of the parent did not answer the creation; retry');
    return new CreatedAnswer(
      result.answer as Answer,
      reply.id,
      this.#host.attributes(anchor) ?? DEFAULTS.attributes,
      typeof options.parentToken === 'string' ? options.parentToken : undefined,
    );
  }

  /** Serves a request forwarded by another replica, or queued in the inbox. */
  async #serve(request: ForwardRequest, inboxSeq?: number): Promise<ForwardReply> {
    if (!this.#cluster.owns(request.id) || this.#host.closed) return { kind: 'notOwner' };
    let reply: ForwardReply;
    try {
      if (request.op === 'create') {
        const created = await this.#host.create(request.anchor, request.options as CreateOptions);
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
        const data = ingestData('callbackData', request.data, this.#host.maxDataBytes);
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
      this.#host.registry.inboxDone(inboxSeq);
    return reply;
  }

  /** The owner's reply as this engine's own result (its answer, or its error). */
  #fromReply(reply: ForwardReply, anchor: string, token: string): DispatchResult {
    if (reply.kind === 'error') {
      if (reply.code === 'CBE_ERR_STORE_UNAVAILABLE')
        throw new StoreUnavailableError(reply.message);
      throw new CallbackEngineError(
        reply.code as CallbackEngineError['code'],
        reply.statusCode,
        reply.message,
        { retryable: reply.retryable },
      );
    }
    if (reply.kind !== 'answer')
      throw new StoreUnavailableError('the owner of the callback did not answer; retry');
    const a = reply.answer;
    const data = ingestData('answer data', a.data, Number.MAX_SAFE_INTEGER);
    const answer = new Answer(
      a.status as Answer['status'],
      a.token || token,
      DataVersion.of(data),
      this.#host.attributes(anchor),
      reply.id,
      undefined,
      a.stepError as Answer['stepError'],
    );
    return { answer, outcome: reply.outcome as DispatchResult['outcome'] };
  }

  /** The shards this replica owns changed: forget the others, recount, re-read due times. */
  async #ownershipChanged(): Promise<void> {
    const n = this.#store.cluster.shards;
    this.#host.registry.disown((id) => this.#cluster.ownsShard(shardOf(id, n)), notOwned());
    try {
      this.#host.stats.resetCounts(await this.#store.shardCounts(this.#cluster.ownedShards));
    } catch (err) {
      this.#host.warn(err);
    }
    this.#host.registry.pokeScheduler();
    this.#host.ownershipChanged?.();
  }
}
