/**
 * `postgresStore()`: a durable store in one PostgreSQL schema, on node-postgres
 * (`pg`), shared by every replica of a service. Each group commit is one
 * statement (one round trip, one implicit transaction: data-modifying CTEs),
 * fenced by the shard leases the committing replica holds: a replica that lost
 * a lease commits nothing more for its callbacks.
 *
 * This class opens and closes the store and hands each call to the room of the
 * folder that holds it: `prefetch.ts` (what the synchronous path reads),
 * `reads.ts` (reads as committed), `writes.ts` and `commit.ts` (group commits,
 * deduplication keys), `early-events.ts`, `inbox.ts`, `lease-table.ts` (the
 * lease statements; the leases themselves are kept by `cluster/leases.ts`),
 * `migrate.ts` and `schema.ts`.
 *
 * @module
 */

import { CallbackEngineError, StoreIncompatibleError, StoreLockedError } from '../../errors.js';
import type { CallbackStatus } from '../../lifecycle/statuses.js';
import type { HeldShards } from '../shards.js';
import type {
  CommitResult,
  DurableStore,
  InboxEntry,
  Prefetch,
  StoreBatch,
  StoredCallback,
  StoreCountQuery,
  StoreListQuery,
  StoreOpenContext,
  StoreRecovery,
} from '../store.js';
import { loadPool, PgDb, type Query } from './db.js';
import { SharedEarlyTable, type HoldEarlyOutcome, type SharedEarlyRow } from './early-events.js';
import { Inbox, type InboxReport } from './inbox.js';
import {
  joinMembers,
  leaseRound,
  leaveMembers,
  releaseLeases,
  type LeaseRound,
} from './lease-table.js';
import { migrateSchema } from './migrate.js';
import type { ClusterSettings, PostgresStoreOptions } from './options.js';
import { PrefetchCache } from './prefetch.js';
import { CommittedReads } from './reads.js';
import { Writes } from './writes.js';

export type { ClusterSettings, PostgresStoreOptions } from './options.js';
export type { HoldEarlyOutcome, SharedEarlyRow } from './early-events.js';
export type { LeaseRound } from './lease-table.js';

/** No shard held: what a store is fenced by until the cluster's leases attach. */
const NO_LEASES: HeldShards = { held: () => new Map() };

/** The PostgreSQL store (made by `postgresStore()` in `callback-engine/postgres`). */
export class PostgresStore implements DurableStore {
  readonly kind = 'durable' as const;
  readonly name: string;
  readonly cluster: ClusterSettings;
  readonly #url: string;
  readonly #schema: string;
  readonly #max: number;
  readonly #db: PgDb;
  #node = '';
  /** The shards this replica holds and their epochs (the fence of every commit): read only. */
  #leases: HeldShards = NO_LEASES;
  readonly #cache: PrefetchCache;
  readonly #reads: CommittedReads;
  readonly #writes: Writes;
  readonly #inbox: Inbox;
  readonly #early: SharedEarlyTable;

  constructor(options: PostgresStoreOptions, settings: ClusterSettings) {
    this.#url = options.connectionString;
    this.#schema = options.schema;
    this.#max = options.maxConnections ?? 8;
    this.cluster = settings;
    let where = 'postgres';
    try {
      const u = new URL(options.connectionString);
      where = `postgres://${u.host}${u.pathname}`;
    } catch {
      // not a URL: keep the generic name (never print credentials)
    }
    this.name = `${where}#${options.schema}`;
    const db = (this.#db = new PgDb(this.name));
    const cache = (this.#cache = new PrefetchCache(db));
    const heldShards = () => [...this.#leases.held().keys()];
    this.#reads = new CommittedReads(db, cache, heldShards);
    this.#writes = new Writes(db, cache, () => ({
      node: this.#node,
      shards: settings.shards,
      held: this.#leases.held(),
    }));
    this.#inbox = new Inbox(db, cache, settings.shards, heldShards);
    this.#early = new SharedEarlyTable(db, cache, options.schema);
  }

  /** The connection string (the forwarding transport opens its own connection with it). */
  get connectionString(): string {
    return this.#url;
  }

  /**
   * Fences every commit by these leases from now on (the cluster's lease owner, which alone
   * writes them). Until then no shard is held, so nothing commits.
   */
  fenceBy(leases: HeldShards): void {
    this.#leases = leases;
  }

  /**
   * Runs `fn` in one transaction on a connection of its own, then closes: a migration without an
   * engine (see `migratePostgres()`).
   */
  async migrate<T>(fn: (q: Query) => Promise<T>): Promise<T> {
    const Pool = await loadPool();
    const pool = new Pool({
      connectionString: this.#url,
      max: 1,
      application_name: 'callback-engine:migrate',
    });
    pool.on('error', () => {});
    this.#db.attach(pool);
    try {
      return await this.#db.tx(fn);
    } catch (err) {
      if (err instanceof StoreIncompatibleError || err instanceof CallbackEngineError) throw err;
      throw this.#db.unavailable('migrating', err);
    } finally {
      this.#db.attach(undefined);
      await pool.end().catch(() => {});
    }
  }

  async open(context: StoreOpenContext): Promise<StoreRecovery> {
    const Pool = await loadPool();
    this.#node = context.node;
    const ttl = this.cluster.leaseTtlMs;
    const pool = new Pool({
      connectionString: this.#url,
      max: this.#max,
      application_name: `callback-engine:${context.node}`,
      connectionTimeoutMillis: Math.max(1000, Math.floor(ttl / 2)),
      idleTimeoutMillis: 60_000,
      // A paused replica's open transaction (and its share lock on a lease) ends on its own.
      options: `-c search_path=${this.#schema} -c idle_in_transaction_session_timeout=${Math.max(1000, Math.floor(ttl / 2))}`,
    });
    // An idle connection that breaks (the server restarted) is dropped; the next query reconnects.
    pool.on('error', () => {});
    this.#db.attach(pool);
    try {
      const { shards, leaseTtlMs } = this.cluster;
      await this.#db.tx((q) =>
        migrateSchema(q, { schema: this.#schema, name: this.name, shards, leaseTtlMs }, context),
      );
      await joinMembers(this.#db.q, this.name, { node: context.node, shards, leaseTtlMs });
      const maxSeq = await this.#db.q<{ m: number | null }>(
        'SELECT max(seq)::float8 AS m FROM callbacks',
      );
      // Counts come with the shards this replica takes (see shardCounts).
      return { counts: [], maxSeq: maxSeq[0]?.m ?? -1 };
    } catch (err) {
      this.#db.attach(undefined);
      await pool.end().catch(() => {});
      if (err instanceof StoreLockedError || err instanceof StoreIncompatibleError) throw err;
      throw this.#db.unavailable('opening', err);
    }
  }

  // ---- synchronous reads of what was fetched (see prefetch.ts) --------------------------------

  load(id: string): StoredCallback | undefined {
    return this.#cache.load(id);
  }

  findByIdempotencyKey(key: string): StoredCallback | undefined {
    return this.#cache.findByIdempotencyKey(key);
  }

  findByCorrelationKey(key: string): StoredCallback | undefined {
    return this.#cache.findByCorrelationKey(key);
  }

  childrenOf(id: string): string[] {
    return this.#cache.childrenOf(id);
  }

  hasKey(id: string, key: string): boolean {
    return this.#cache.hasKey(id, key);
  }

  /** Due times are asked for asynchronously ({@link nextDueAsync}); nothing synchronous is due. */
  nextDueAt(): number | undefined {
    return undefined;
  }

  dueIds(): string[] {
    return [];
  }

  list(): StoredCallback[] {
    return this.#cache.list();
  }

  // ---- asynchronous reads (see prefetch.ts, reads.ts) -----------------------------------------

  prefetch(request: Prefetch): Promise<boolean> {
    return this.#cache.prefetch(request);
  }

  /** Reads one row as committed (no prefetch bookkeeping): for replicas that do not own it. */
  read(id: string): Promise<StoredCallback | undefined> {
    return this.#reads.read(id);
  }

  /** Rows of a callback's children, in creation order, as committed. */
  childrenRows(id: string): Promise<StoredCallback[]> {
    return this.#reads.childrenRows(id);
  }

  /** The active callback holding this correlation key (or the newest), as committed. */
  readByCorrelation(key: string): Promise<StoredCallback | undefined> {
    return this.#reads.readByCorrelation(key);
  }

  /** A page of rows in creation order, as committed. */
  listAsync(query: StoreListQuery): Promise<StoredCallback[]> {
    return this.#reads.list(query);
  }

  /** How many rows a listing with these filters holds, as committed. */
  countAsync(query: StoreCountQuery): Promise<number> {
    return this.#reads.count(query);
  }

  /** The earliest due time among the shards this replica holds. */
  nextDueAsync(): Promise<number | undefined> {
    return this.#reads.nextDue();
  }

  dueAsync(now: number, limit: number): Promise<string[]> {
    return this.#reads.due(now, limit);
  }

  owedAsync(shards: readonly number[]): Promise<string[]> {
    return this.#reads.owed(shards);
  }

  history(id: string, afterSeq: number, limit: number): Promise<string[]> {
    return this.#reads.history(id, afterSeq, limit);
  }

  /** Counts per anchor and status of the given shards (as committed). */
  shardCounts(
    shards: readonly number[],
  ): Promise<{ anchor: string; status: CallbackStatus; count: number }[]> {
    return this.#reads.shardCounts(shards);
  }

  // ---- writes (see writes.ts, commit.ts) ------------------------------------------------------

  /** Commits refused by the fence (a lease lost or taken over), for stats and tests. */
  get fencedOut(): number {
    return this.#writes.fencedOut;
  }

  commit(batch: StoreBatch): Promise<CommitResult> {
    return this.#writes.commit(batch);
  }

  pruneKeys(before: number, limit: number): Promise<number> {
    return this.#writes.pruneKeys(before, limit);
  }

  // ---- early events (see early-events.ts) -----------------------------------------------------

  holdEarly(
    row: Omit<SharedEarlyRow, 'seq'>,
    bounds: { readonly maxEvents: number; readonly maxBytes: number },
  ): Promise<HoldEarlyOutcome> {
    return this.#early.hold(row, bounds);
  }

  claimEarly(correlationKey: string): Promise<SharedEarlyRow[]> {
    return this.#early.claim(correlationKey);
  }

  dropEarly(dedupKey: string): Promise<void> {
    return this.#early.drop(dedupKey);
  }

  expireEarly(now: number): Promise<SharedEarlyRow[]> {
    return this.#early.expire(now);
  }

  earlyWithCallbacks(
    query: { readonly expiredBy: number } | { readonly shards: readonly number[] },
  ): Promise<{ event: SharedEarlyRow; callback: StoredCallback }[]> {
    return this.#early.withCallbacks(query);
  }

  earlySummary(): Promise<{ held: number; bytes: number; nextExpiry: number | undefined }> {
    return this.#early.summary();
  }

  // ---- inbox (see inbox.ts) -------------------------------------------------------------------

  enqueue(entry: InboxReport): Promise<'queued' | 'duplicate' | 'owned' | 'stale'> {
    return this.#inbox.enqueue(entry);
  }

  ownerOf(shard: number): Promise<string | undefined> {
    return this.#inbox.ownerOf(shard);
  }

  inbox(limit: number, only?: readonly number[]): Promise<InboxEntry[]> {
    return this.#inbox.entries(limit, only);
  }

  // ---- lease statements (see lease-table.ts; the leases are kept by cluster/leases.ts) --------

  /** One lease round for this replica, which holds `held` (shard, epoch) now. */
  async leaseRound(
    held: readonly (readonly [shard: number, epoch: number])[],
    give: boolean,
  ): Promise<LeaseRound> {
    const { shards, leaseTtlMs } = this.cluster;
    try {
      return await leaseRound(
        (fn) => this.#db.tx(fn),
        { node: this.#node, shards, leaseTtlMs },
        held,
        give,
      );
    } catch (err) {
      throw this.#db.unavailable('renewing leases', err);
    }
  }

  /** Ends these leases of this replica now (shard, epoch). */
  async releaseLeases(leases: readonly (readonly [shard: number, epoch: number])[]): Promise<void> {
    try {
      await releaseLeases(this.#db.q, this.#node, leases);
    } catch (err) {
      throw this.#db.unavailable('releasing leases', err);
    }
  }

  /** Removes this replica's heartbeat (it left the cluster). */
  async leaveMembers(): Promise<void> {
    try {
      await leaveMembers(this.#db.q, this.#node);
    } catch (err) {
      throw this.#db.unavailable('leaving', err);
    }
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}
