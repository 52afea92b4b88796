/**
 * A replica's part in a cluster on one PostgreSQL schema: it runs its lease
 * rounds (the leases themselves, fenced in every commit by the store, are kept
 * by `leases.ts`): it takes a fair share of the shards, renews them, gives some
 * back when a replica joins, hands everything over at once when it closes,
 * applies the reports queued for shards it takes over before any other, and
 * reaches the owner of any other callback over the forwarding transport, or
 * queues the report durably when the owner does not answer in time.
 *
 * @module
 */

import { StoreUnavailableError } from '../errors.js';
import { toError } from '../thrown.js';
import type { PostgresStore } from '../store/postgres/store.js';
import { shardOf } from '../store/shards.js';
import type { ClusterStats } from '../types.js';
import { errorReply, type ForwardReply, type ForwardRequest } from './forward.js';
import { Leases } from './leases.js';
import { PgTransport } from './pg-transport.js';
import { NatsTransport, type Transport } from './transport.js';

/** What the cluster needs from its engine. */
export interface ClusterHost {
  /** At the owner: applies a forwarded or queued request and answers it. */
  serve(request: ForwardRequest, inboxSeq?: number): Promise<ForwardReply>;
  /** The set of owned shards changed (drop what is no longer owned, recount). */
  ownershipChanged(): Promise<void>;
  /**
   * Shards were taken over: the step invocations their callbacks owe (cut off at the previous
   * owner) run first, before any queued or new report reaches those callbacks.
   */
  resumeOwed(shards: readonly number[]): Promise<void>;
  /**
   * Shards are being handed over: waits (at most `timeoutMs`) for the steps of their callbacks
   * to end, so their outcome is committed here rather than run again by the next owner.
   */
  quiesce(shards: readonly number[], timeoutMs: number): Promise<void>;
  /** How long a handover waits for running steps (the engine's `closeTimeout`). */
  readonly handoverTimeoutMs: number;
  /** Resolves once every pending write is committed (before shards are handed over). */
  flush(): Promise<void>;
  /** Receives background failures (never thrown). */
  warn(err: unknown): void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One replica's membership in a cluster. */
export class Cluster {
  readonly #store: PostgresStore;
  readonly #node: string;
  /** This replica's leases (the one writer of them; the store is fenced by them). */
  readonly leases: Leases;
  #host: ClusterHost | undefined;
  #transport: Transport | undefined;
  #owners = new Map<number, string>();
  /** Shards just taken over whose owed steps are resumed and queued reports applied. */
  readonly #drainingShards = new Map<number, Promise<void>>();
  /**
   * Shards whose queued reports could not all be applied: direct reports for their callbacks
   * are refused (retryable) until a later drain succeeds, so none overtakes a queued one.
   */
  readonly #blockedShards = new Set<number>();
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  #again = false;
  #closing = false;
  #draining = false;
  #forwarded = 0;
  #served = 0;
  #queued = 0;
  #inboxApplied = 0;
  #leaseRounds = 0;
  #stepDowns = 0;
  #lastError: Error | undefined;

  constructor(store: PostgresStore, node: string) {
    this.#store = store;
    this.#node = node;
    this.leases = new Leases(store);
  }

  get #settings() {
    return this.#store.cluster;
  }

  /** Counters, for stats and tests. */
  get stats(): ClusterStats {
    return {
      shards: this.leases.held().size,
      forwarded: this.#forwarded,
      served: this.#served,
      queued: this.#queued,
      inboxApplied: this.#inboxApplied,
      leaseRounds: this.#leaseRounds,
      stepDowns: this.#stepDowns,
      fenced: this.#store.fencedOut,
    };
  }

  /**
   * Joins: connects the transport, takes a share of the shards, and starts renewing. Resolves
   * once this replica holds shards (or after a few rounds if every shard stays taken).
   */
  async start(host: ClusterHost): Promise<void> {
    this.#host = host;
    // Forwarding: NATS when configured (faster), else LISTEN/NOTIFY on the store's database.
    const nats = this.#settings.nats;
    try {
      this.#transport = nats
        ? await NatsTransport.connect(
            nats.servers,
            this.#settings.subject,
            `callback-engine:${this.#node}`,
          )
        : await PgTransport.connect({
            connectionString: this.#store.connectionString,
            prefix: this.#settings.subject,
            name: `callback-engine:${this.#node}:forward`,
            node: this.#node,
          });
    } catch (err) {
      throw new StoreUnavailableError(
        nats
          ? `cannot connect to NATS (${String(nats.servers)}): ${toError(err).message}`
          : `cannot open the forwarding connection to ${this.#store.name}: ${toError(err).message}`,
        { cause: err },
      );
    }
    this.#transport.serve(this.#node, (payload) => this.#onRequest(payload));
    this.#transport.onBroadcast(() => this.#kick());
    // The others give up their excess at their next round (a broadcast hurries them): wait for
    // a share that long, then run with what there is (a cluster with more replicas than shards).
    const renew = this.#settings.renewIntervalMs;
    const until = performance.now() + 2 * renew + 1000;
    for (let first = true; ; first = false) {
      await this.#runRound();
      // Tell the others a replica joined: they give up their excess now, not at their next round.
      if (first) this.#transport?.broadcast();
      if (this.leases.held().size > 0 || performance.now() >= until) break;
      await sleep(Math.min(renew, 250));
    }
    if (this.#lastError && this.leases.held().size === 0) {
      await this.#transport?.close();
      throw this.#lastError;
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closing) return;
    this.#timer = setTimeout(() => {
      void this.#runRound().finally(() => this.#schedule());
    }, this.#settings.renewIntervalMs);
    this.#timer.unref();
  }

  /** Runs a lease round now (another replica broadcast a change). */
  #kick(): void {
    if (this.#closing) return;
    void this.#runRound();
  }

  /** Runs one lease round (or joins the running one); never rejects. */
  #runRound(): Promise<void> {
    if (this.#round) {
      this.#again = true;
      return this.#round;
    }
    this.#round = this.#leaseRound()
      .catch((err: unknown) => this.#host!.warn(err))
      .finally(() => {
        this.#round = undefined;
        if (this.#again && !this.#closing) {
          this.#again = false;
          void this.#runRound();
        }
      });
    return this.#round;
  }

  async #leaseRound(): Promise<void> {
    const host = this.#host!;
    this.#leaseRounds++;
    let round;
    try {
      round = await this.leases.round({ give: !this.#closing });
      this.#lastError = undefined;
    } catch (err) {
      this.#lastError = toError(err);
      host.warn(err);
      // Cut off from the database: once the leases may have ended, stop owning.
      if (this.leases.expired()) await this.#stepDown();
      return;
    }
    this.#owners = round.owners;
    if (round.lost.length > 0) this.#stepDowns++;
    // Reports queued while these shards had no owner go first: direct ones wait for them.
    const gained = round.gained.map((g) => g.shard);
    let drained: Promise<void> | undefined;
    if (gained.length > 0) {
      // In the same synchronous step as the drain mark: no report sees these shards as owned
      // before the reports queued for them are known to go first.
      this.leases.adopt(round.gained);
      let open!: () => void;
      drained = new Promise<void>((resolve) => (open = resolve));
      for (const s of gained) this.#drainingShards.set(s, drained);
      const mark = drained;
      void (async () => {
        let ok = false;
        try {
          await host.ownershipChanged();
          await host.resumeOwed(gained);
          ok = await this.#drainInbox(gained);
        } catch (err) {
          host.warn(err);
        } finally {
          // A failed drain keeps the barrier: direct reports wait for a later drain.
          if (!ok) for (const s of gained) this.#blockedShards.add(s);
          for (const s of gained)
            if (this.#drainingShards.get(s) === mark) this.#drainingShards.delete(s);
          open();
        }
      })();
    }
    if (round.released.length > 0) await this.#handOver(round.released);
    if (round.lost.length > 0 || round.released.length > 0) await host.ownershipChanged();
    if (round.released.length > 0) this.#transport?.broadcast();
    await drained;
    if (this.leases.held().size > 0) {
      const blocked = [...this.#blockedShards];
      void this.#drainInbox().then((ok) => {
        if (ok) for (const s of blocked) this.#blockedShards.delete(s);
      });
    }
    for (const s of this.#blockedShards)
      if (!this.leases.held().has(s)) this.#blockedShards.delete(s);
  }

  /** Leases may have ended without renewal: own nothing until the next successful round. */
  async #stepDown(): Promise<void> {
    if (!this.leases.dropAll()) return;
    this.#stepDowns++;
    await this.#host!.ownershipChanged();
  }

  /**
   * Gives shards back at once: no new work; the steps of their callbacks may end (up to the
   * engine's `closeTimeout`: one cut off then stays owed and the next owner runs it); pending
   * writes committed; leases ended.
   */
  async #handOver(shards: readonly number[]): Promise<void> {
    const host = this.#host!;
    await this.leases.handOver(shards, async () => {
      await host.quiesce(shards, host.handoverTimeoutMs);
      await host.ownershipChanged();
      await host.flush();
    });
    for (const s of shards) this.#owners.delete(s);
  }

  /** Whether this replica owns the callback now (a valid lease on its shard). */
  owns(id: string): boolean {
    const shard = shardOf(id, this.#settings.shards);
    if (this.leases.ownsShard(shard)) return true;
    // Held but past the lease (SIGSTOP, a long GC): step down before anything else.
    if (this.leases.lapsed(shard)) this.#stepDown().catch((err: unknown) => this.#host!.warn(err));
    return false;
  }

  /**
   * Resolves once queued reports of the callback's shard, taken over just now, are applied
   * (`undefined` when none are pending): a direct report must not overtake them.
   */
  settled(id: string): Promise<void> | undefined {
    if (this.#drainingShards.size === 0 && this.#blockedShards.size === 0) return undefined;
    const shard = shardOf(id, this.#settings.shards);
    if (this.#blockedShards.has(shard))
      return Promise.reject(
        new StoreUnavailableError(
          'reports queued for this callback while its shard had no owner are not all applied yet; retry',
        ),
      );
    return this.#drainingShards.get(shard);
  }

  /**
   * Sends a request to the owner of `id` and returns its reply: forwarded over the transport;
   * for a report whose shard has no live owner (its owner died or froze past its lease),
   * queued durably for the next owner. A live owner that cannot be reached within
   * `forwardTimeout` is a retryable `StoreUnavailableError`.
   */
  async route(
    id: string,
    request: ForwardRequest,
    arrivedAt = performance.now(),
  ): Promise<ForwardReply> {
    const shard = shardOf(id, this.#settings.shards);
    const deadline = performance.now() + this.#settings.forwardTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      this.leases.checkFresh(arrivedAt);
      const payload = JSON.stringify(
        request.op === 'report' ? { ...request, notAfter: this.leases.viewEnd() } : request,
      );
      // Owned here now (serving waits for queued reports of the shard to go first).
      if (this.owns(id)) return this.#host!.serve(request);
      const left = deadline - performance.now();
      if (left <= 0) break;
      const owner = this.#owners.get(shard);
      if (owner !== undefined && owner !== this.#node && this.#transport) {
        try {
          this.#forwarded++;
          const reply = JSON.parse(
            await this.#transport.request(owner, payload, Math.max(100, left / 2)),
          ) as ForwardReply;
          if (reply.kind !== 'notOwner') return reply;
        } catch {
          // No answer in time, or nobody serves that replica any more.
        }
      }
      if (request.op === 'report') {
        this.leases.checkFresh(arrivedAt);
        const queued = await this.#store.enqueue({
          callbackId: id,
          dedupKey: request.dedupKey,
          message: payload,
          // The database refuses it past this instant (wall clock): a replica frozen right here
          // queues nothing stale when it wakes.
          notAfter: this.leases.viewEnd(),
        });
        // Its view of the cluster ended before the database saw the report: nothing was queued.
        if (queued === 'stale')
          throw new StoreUnavailableError(
            'this replica was cut off from the cluster (paused, or without its database) before the report could be queued; it was not applied: retry',
          );
        if (queued !== 'owned') {
          if (queued === 'queued') this.#queued++;
          return { kind: 'queued' };
        }
      }
      // A live owner elsewhere: learn who it is now, and try again.
      const now = await this.#store.ownerOf(shard);
      if (now === undefined || now === this.#node) {
        this.#owners.delete(shard);
        this.#kick();
      } else this.#owners.set(shard, now);
      await sleep(
        Math.min(Math.max(0, deadline - performance.now()), 20 * 2 ** Math.min(attempt, 3)),
      );
    }
    throw new StoreUnavailableError(
      `the replica that owns callback ${id} did not answer within forwardTimeout; retry`,
    );
  }

  /** A request from another replica. */
  async #onRequest(payload: string): Promise<string> {
    let reply: ForwardReply;
    try {
      const request = JSON.parse(payload) as ForwardRequest;
      this.#served++;
      reply = await this.#host!.serve(request);
    } catch (err) {
      reply = errorReply(err);
    }
    return JSON.stringify(reply);
  }

  /**
   * Applies queued reports of the owned shards (or of `only`), in queue order per callback.
   * @returns whether every queued report was applied (or is gone).
   */
  async #drainInbox(only?: readonly number[]): Promise<boolean> {
    if (!only) {
      if (this.#draining) return false;
      this.#draining = true;
    }
    try {
      for (;;) {
        const entries = await this.#store.inbox(256, only);
        if (entries.length === 0) return true;
        const chains = new Map<string, Promise<void>>();
        for (const e of entries) {
          if (!this.leases.ownsShard(shardOf(e.callbackId, this.#settings.shards))) continue;
          const prev = chains.get(e.callbackId) ?? Promise.resolve();
          chains.set(
            e.callbackId,
            prev.then(async () => {
              const request = JSON.parse(e.message) as ForwardRequest;
              const reply = await this.#host!.serve(request, e.seq);
              if (reply.kind === 'error' && reply.retryable) throw new Error(reply.message);
              // Not applied (this replica's lease lapsed meanwhile): the drain is not done.
              if (reply.kind === 'notOwner') throw new Error('the shard moved while draining');
              this.#inboxApplied++;
            }),
          );
        }
        const results = await Promise.allSettled(chains.values());
        // Failures stay queued; they are tried again on the next lease round.
        if (results.some((r) => r.status === 'rejected')) return false;
        // Applied entries leave the inbox with the next commit: wait for it before re-reading.
        await this.#host!.flush();
        if (entries.length < 256) return true;
      }
    } catch (err) {
      this.#host!.warn(err);
      return false;
    } finally {
      if (!only) this.#draining = false;
    }
  }

  /**
   * Leaves the cluster: no new work, pending writes committed, every shard given back at
   * once, and the other replicas told to take them.
   */
  async leave(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearTimeout(this.#timer);
    await this.#round;
    try {
      await this.leases.leave(async () => {
        await this.#host?.flush();
      });
      this.#transport?.broadcast();
    } catch (err) {
      this.#host?.warn(err);
    }
  }

  /** Closes the transport (after {@link leave}); nothing is owned any more. */
  async close(): Promise<void> {
    this.leases.dropAll();
    await this.#transport?.close().catch(() => {});
    this.#transport = undefined;
  }
}
