/**
 * `postgresStore()`: a durable store in one PostgreSQL schema, on node-postgres
 * (`pg`), shared by every replica of a service. Each group commit is one
 * statement (one round trip, one implicit transaction: data-modifying CTEs),
 * fenced by the shard leases the committing replica holds: a replica that lost
 * a lease commits nothing more for its callbacks.
 *
 * PostgreSQL answers reads asynchronously, so the engine fetches what a
 * report needs first (`prefetch`) and then runs its synchronous path on what
 * was fetched; a read that was not fetched is refused rather than guessed.
 *
 * @module
 */

import type pg from 'pg';
import {
  CallbackEngineError,
  LeaseLostError,
  StoreIncompatibleError,
  StoreLockedError,
  StoreUnavailableError,
  toError,
} from '../../errors.js';
import type { CallbackStatus } from '../../lifecycle/statuses.js';
import { toEarlyRow, type EarlyRow } from '../row.js';
import { shardOf, type ShardLease } from '../shards.js';
import type {
  CommitResult,
  EarlyEventRow,
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
import { buildCommit } from './commit.js';
import { migrateSchema } from './migrate.js';
import type { ClusterSettings, PostgresStoreOptions } from './options.js';
import { TERMINAL_SQL } from './schema.js';
import {
  BY_CORRELATION,
  byIds,
  CALLBACK_COLUMNS,
  decodeKey,
  encodeKey,
  fromRow as fromPg,
  SELECT_CALLBACK,
  type CallbackRow as Row,
} from './sql.js';

export type { ClusterSettings, PostgresStoreOptions } from './options.js';

/** An early event as the PostgreSQL store holds it (`seq` is cluster-wide arrival order). */
export type SharedEarlyRow = EarlyEventRow;

/** What {@link PostgresStore.holdEarly} did. */
export type HoldEarlyOutcome =
  | { readonly kind: 'held' }
  /** Held already (a redelivery): the row that holds it. */
  | { readonly kind: 'duplicate'; readonly anchor: string; readonly expiresAt: number }
  /** The anchor's bound would be passed: what it holds now. */
  | { readonly kind: 'full'; readonly count: number; readonly bytes: number };

const EARLY_COLUMNS =
  'e.seq::float8 AS seq, e.dedup_key, e.anchor, e.corr_key, e.status, e.data, e.held_at::float8 AS held_at, e.expires_at::float8 AS expires_at';

const fromEarly = (r: EarlyRow): SharedEarlyRow => toEarlyRow(r, (k) => decodeKey(k)!);

/** An active callback holding the correlation key of the early row `e`. */
const ACTIVE_HOLDER = `SELECT 1 FROM callbacks c WHERE c.corr_key = e.corr_key AND c.status NOT IN (${TERMINAL_SQL})`;

/** Error codes of a PostgreSQL server that is going away or not there. */
const pgCode = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;

/** What one prefetch brought in; read by the synchronous calls of the same turn. */
interface Fetched {
  rows: Map<string, StoredCallback | null>;
  children: Map<string, string[]>;
  idem: Map<string, StoredCallback | null>;
  corr: Map<string, StoredCallback | null>;
  /** `callbackId \0 key` → whether it was applied. */
  keys: Map<string, boolean>;
}

const emptyFetched = (): Fetched => ({
  rows: new Map(),
  children: new Map(),
  idem: new Map(),
  corr: new Map(),
  keys: new Map(),
});

/** The PostgreSQL store (made by `postgresStore()` in `callback-engine/postgres`). */
export class PostgresStore implements DurableStore {
  readonly kind = 'durable' as const;
  readonly name: string;
  readonly cluster: ClusterSettings;
  readonly #url: string;
  readonly #schema: string;
  readonly #max: number;
  #pool: pg.Pool | undefined;
  #node = '';
  /** Shards this replica holds, with their epochs (the fence of every commit). */
  readonly #held = new Map<number, number>();
  /** Fetched rows, valid until the end of the turn that fetched them. */
  #fetched = emptyFetched();
  #clearScheduled = false;
  /** Commits completed; and for ids written while a prefetch was in flight, the commit number. */
  #commitNo = 0;
  #readsInFlight = 0;
  readonly #writtenAt = new Map<string, number>();
  #closed = false;

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
  }

  /** The connection string (the forwarding transport opens its own connection with it). */
  get connectionString(): string {
    return this.#url;
  }

  /** The connection pool (open). */
  get #db(): pg.Pool {
    if (!this.#pool || this.#closed) throw new StoreUnavailableError(`${this.name} is not open`);
    return this.#pool;
  }

  /** One statement (its own transaction). */
  async #q<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return (await this.#db.query(text, params)).rows as T[];
  }

  /** Statements in one transaction on one connection. */
  async #tx<T>(
    fn: (q: <R>(text: string, params?: unknown[]) => Promise<R[]>) => Promise<T>,
  ): Promise<T> {
    const client = await this.#db.connect();
    let broken: Error | undefined;
    // A connection that dies between two statements must not throw from an event emitter.
    const onError = (err: Error) => (broken = err);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const out = await fn(
        async <R>(text: string, params: unknown[] = []) =>
          (await client.query(text, params)).rows as R[],
      );
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => (broken = toError(e)));
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  /** Wraps a driver failure as a typed, retryable error. */
  #unavailable(what: string, err: unknown): StoreUnavailableError {
    if (err instanceof StoreUnavailableError) return err;
    const code = pgCode(err);
    if (code === 'CB001')
      return new LeaseLostError(`${what}: this replica no longer owns the shard`, { cause: err });
    return new StoreUnavailableError(
      `${what} on ${this.name} failed${code ? ` (${code})` : ''}: ${toError(err).message}`,
      { cause: err },
    );
  }

  /** node-postgres's pool class, loaded on first use (the root entry never loads `pg`). */
  static async #Pool(): Promise<typeof pg.Pool> {
    try {
      return (await import('pg')).default.Pool;
    } catch (err) {
      throw new StoreUnavailableError(
        'postgresStore() needs the package pg (node-postgres 8.x): npm install pg',
        { cause: err },
      );
    }
  }

  /**
   * Runs `fn` in one transaction on a connection of its own, then closes: a migration without an
   * engine (see `migratePostgres()`).
   */
  async migrate<T>(
    fn: (q: <R>(text: string, params?: unknown[]) => Promise<R[]>) => Promise<T>,
  ): Promise<T> {
    const Pool = await PostgresStore.#Pool();
    const pool = new Pool({
      connectionString: this.#url,
      max: 1,
      application_name: 'callback-engine:migrate',
    });
    pool.on('error', () => {});
    this.#pool = pool;
    try {
      return await this.#tx(fn);
    } catch (err) {
      if (err instanceof StoreIncompatibleError || err instanceof CallbackEngineError) throw err;
      throw this.#unavailable('migrating', err);
    } finally {
      this.#pool = undefined;
      await pool.end().catch(() => {});
    }
  }

  async open(context: StoreOpenContext): Promise<StoreRecovery> {
    const Pool = await PostgresStore.#Pool();
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
    this.#pool = pool;
    try {
      await this.#tx((q) =>
        migrateSchema(
          q,
          {
            schema: this.#schema,
            name: this.name,
            shards: this.cluster.shards,
            leaseTtlMs: this.cluster.leaseTtlMs,
          },
          context,
        ),
      );
      const live = await this.#q<{ node: string }>(
        `SELECT node FROM members WHERE node = $1 AND seen_at > now() - $2 * interval '1 millisecond'`,
        [context.node, ttl],
      );
      if (live.length > 0)
        throw new StoreLockedError(
          `another live replica is named ${JSON.stringify(context.node)} in ${this.name} (node names must be distinct)`,
        );
      await this.#q(
        `INSERT INTO members (node, seen_at) VALUES ($1, now())
         ON CONFLICT (node) DO UPDATE SET seen_at = now()`,
        [context.node],
      );
      const maxSeq = await this.#q<{ m: number | null }>(
        'SELECT max(seq)::float8 AS m FROM callbacks',
      );
      // Counts come with the shards this replica takes (see shardCounts).
      return { counts: [], maxSeq: maxSeq[0]?.m ?? -1 };
    } catch (err) {
      this.#pool = undefined;
      await pool.end().catch(() => {});
      if (err instanceof StoreLockedError || err instanceof StoreIncompatibleError) throw err;
      throw this.#unavailable('opening', err);
    }
  }

  // ---- synchronous reads of what was fetched --------------------------------------------------

  #miss(what: string): never {
    throw new StoreUnavailableError(
      `${this.name}: ${what} was read without being fetched first (an engine bug); retry`,
    );
  }

  load(id: string): StoredCallback | undefined {
    const row = this.#fetched.rows.get(id);
    if (row === undefined) this.#miss(`callback ${id}`);
    return row ?? undefined;
  }

  findByIdempotencyKey(key: string): StoredCallback | undefined {
    const row = this.#fetched.idem.get(key);
    if (row === undefined) this.#miss('an idempotency key');
    return row ?? undefined;
  }

  findByCorrelationKey(key: string): StoredCallback | undefined {
    const row = this.#fetched.corr.get(key);
    if (row === undefined) this.#miss('a correlation key');
    return row ?? undefined;
  }

  childrenOf(id: string): string[] {
    const ids = this.#fetched.children.get(id);
    if (ids === undefined) this.#miss(`the children of ${id}`);
    return [...ids];
  }

  hasKey(id: string, key: string): boolean {
    const applied = this.#fetched.keys.get(`${id}\u0000${key}`);
    if (applied === undefined) this.#miss(`a deduplication key of ${id}`);
    return applied;
  }

  /** Due times are asked for asynchronously ({@link nextDueAsync}); nothing synchronous is due. */
  nextDueAt(): number | undefined {
    return undefined;
  }

  dueIds(): string[] {
    return [];
  }

  list(): StoredCallback[] {
    this.#miss('a listing');
  }

  // ---- asynchronous reads ---------------------------------------------------------------------

  #keep(): void {
    if (this.#clearScheduled) return;
    this.#clearScheduled = true;
    setImmediate(() => {
      this.#clearScheduled = false;
      this.#fetched = emptyFetched();
    });
  }

  /** Runs a read; rows written by a commit that completed meanwhile are not kept (stale). */
  async #fresh<T>(read: () => Promise<T>): Promise<{ value: T; since: number }> {
    const since = this.#commitNo;
    this.#readsInFlight++;
    try {
      return { value: await read(), since };
    } catch (err) {
      throw this.#unavailable('reading', err);
    } finally {
      if (--this.#readsInFlight === 0) this.#writtenAt.clear();
    }
  }

  #stale(id: string, since: number): boolean {
    const at = this.#writtenAt.get(id);
    return at !== undefined && at > since;
  }

  /**
   * Fetches what the engine's next synchronous reads need: rows by id (with their children),
   * by idempotency key or by correlation key.
   * @returns `false` if a row changed while it was read (fetch again).
   */
  async prefetch(request: Prefetch): Promise<boolean> {
    const ids = request.ids ?? [];
    const keys = request.keys ?? [];
    const none = Promise.resolve([] as Row[]);
    const { value, since } = await this.#fresh(async () => {
      const [rows, idem, corr, applied] = await Promise.all([
        ids.length === 0 ? none : this.#q<Row>(byIds(request.subtree === true), [ids]),
        request.idempotencyKey === undefined
          ? none
          : this.#q<Row>(
              `${SELECT_CALLBACK} WHERE c.idem_key = $1
               UNION ALL ${SELECT_CALLBACK}
               WHERE c.parent_id = (SELECT id FROM callbacks WHERE idem_key = $1)`,
              [encodeKey(request.idempotencyKey)],
            ),
        request.correlationKey === undefined
          ? none
          : this.#q<Row>(BY_CORRELATION, [encodeKey(request.correlationKey)]),
        keys.length === 0
          ? Promise.resolve([] as { callback_id: string; key: string }[])
          : this.#q<{ callback_id: string; key: string }>(
              `SELECT d.callback_id, d.key FROM dedup d
               JOIN unnest($1::text[], $2::text[]) AS k(id, key)
                 ON d.callback_id = k.id AND d.key = k.key`,
              [keys.map((k) => k.id), keys.map((k) => k.key)],
            ),
      ]);
      return { rows, idem, corr, applied };
    });
    const f = this.#fetched;
    let fresh = true;
    const asked = new Set(ids);
    const kids = new Map<string, { seq: number; id: string }[]>();
    for (const id of ids) {
      f.rows.set(id, null);
      kids.set(id, []);
    }
    if (request.subtree) for (const r of value.rows) if (!kids.has(r.id)) kids.set(r.id, []);
    for (const r of value.rows) {
      if (this.#stale(r.id, since)) {
        fresh = false;
        f.rows.delete(r.id);
        continue;
      }
      if (asked.has(r.id) || request.subtree) f.rows.set(r.id, fromPg(r));
      const siblings = r.parent_id === null ? undefined : kids.get(r.parent_id);
      if (siblings && !siblings.some((k) => k.id === r.id)) {
        siblings.push({ seq: r.seq, id: r.id });
        if (!f.rows.has(r.id)) f.rows.set(r.id, fromPg(r));
      }
    }
    for (const [id, list] of kids) {
      // A parent written meanwhile may have gained children: not fresh.
      if (this.#stale(id, since)) {
        fresh = false;
        f.rows.delete(id);
      }
      f.children.set(
        id,
        list.sort((x, y) => x.seq - y.seq).map((k) => k.id),
      );
    }
    if (request.idempotencyKey !== undefined) {
      // The row with the key first, then its children (in creation order).
      const key = encodeKey(request.idempotencyKey);
      const r = value.idem.find((x) => x.idem_key === key);
      if (r && this.#stale(r.id, since)) fresh = false;
      else f.idem.set(request.idempotencyKey, r ? fromPg(r) : null);
      if (r && !this.#stale(r.id, since) && !f.children.has(r.id)) {
        f.rows.set(r.id, fromPg(r));
        f.children.set(
          r.id,
          value.idem
            .filter((x) => x.parent_id === r.id)
            .sort((x, y) => x.seq - y.seq)
            .map((x) => x.id),
        );
      }
    }
    if (request.correlationKey !== undefined) {
      const r = value.corr[0];
      if (r && this.#stale(r.id, since)) fresh = false;
      else f.corr.set(request.correlationKey, r ? fromPg(r) : null);
    }
    const found = new Set(value.applied.map((a) => `${a.callback_id}\u0000${a.key}`));
    for (const k of keys) {
      const id = `${k.id}\u0000${k.key}`;
      f.keys.set(id, found.has(id));
    }
    this.#keep();
    return fresh;
  }

  /** Reads one row as committed (no prefetch bookkeeping): for replicas that do not own it. */
  async read(id: string): Promise<StoredCallback | undefined> {
    const { value } = await this.#fresh(() =>
      this.#q<Row>(`${SELECT_CALLBACK} WHERE c.id = $1`, [id]),
    );
    return value[0] && fromPg(value[0]);
  }

  /** Rows of a callback's children, in creation order, as committed. */
  async childrenRows(id: string): Promise<StoredCallback[]> {
    const { value } = await this.#fresh(() =>
      this.#q<Row>(`${SELECT_CALLBACK} WHERE c.parent_id = $1 ORDER BY c.seq`, [id]),
    );
    return value.map(fromPg);
  }

  /** The active callback holding this correlation key (or the newest), as committed. */
  async readByCorrelation(key: string): Promise<StoredCallback | undefined> {
    const { value } = await this.#fresh(() => this.#q<Row>(BY_CORRELATION, [encodeKey(key)]));
    return value[0] && fromPg(value[0]);
  }

  /** A page of rows in creation order, as committed. */
  async listAsync(query: StoreListQuery): Promise<StoredCallback[]> {
    const newest = query.beforeSeq !== undefined;
    const where = [newest ? 'c.seq < $1' : 'c.seq > $1'];
    const params: unknown[] = [newest ? query.beforeSeq : query.afterSeq];
    if (query.anchor !== undefined) {
      params.push(query.anchor);
      where.push(`c.anchor = $${params.length}`);
    }
    if (query.statuses && query.statuses.length > 0) {
      params.push([...query.statuses]);
      where.push(`c.status = ANY($${params.length}::text[])`);
    }
    params.push(query.limit);
    const text = `${SELECT_CALLBACK} WHERE ${where.join(' AND ')} ORDER BY c.seq${newest ? ' DESC' : ''} LIMIT $${params.length}`;
    const { value } = await this.#fresh(() => this.#q<Row>(text, params));
    return value.map(fromPg);
  }

  /** How many rows a listing with these filters holds, as committed. */
  async countAsync(query: StoreCountQuery): Promise<number> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.anchor !== undefined) {
      params.push(query.anchor);
      where.push(`anchor = $${params.length}`);
    }
    if (query.statuses && query.statuses.length > 0) {
      params.push([...query.statuses]);
      where.push(`status = ANY($${params.length}::text[])`);
    }
    if (query.tags.length > 0) {
      // jsonb holds no NUL: a row whose fixed part escapes one (or such a tag) matches no tag.
      if (query.tags.some((t) => t.includes('\u0000'))) return 0;
      params.push(JSON.stringify(query.tags));
      where.push(
        `(CASE WHEN strpos(meta, '\\u0000') = 0 THEN (meta::jsonb -> 'tags') @> $${params.length}::jsonb END)`,
      );
    }
    const text = `SELECT count(*)::int AS n FROM callbacks${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`;
    const { value } = await this.#fresh(() => this.#q<{ n: number }>(text, params));
    return value[0]?.n ?? 0;
  }

  /** The earliest due time among the shards this replica holds. */
  async nextDueAsync(): Promise<number | undefined> {
    const shards = [...this.#held.keys()];
    if (shards.length === 0) return undefined;
    const { value } = await this.#fresh(() =>
      this.#q<{ at: number | null }>(
        `SELECT due_at::float8 AS at FROM callbacks
         WHERE due_at IS NOT NULL AND shard = ANY($1::int[]) ORDER BY due_at LIMIT 1`,
        [shards],
      ),
    );
    return value[0]?.at ?? undefined;
  }

  /** Ids due at `now` in the held shards, fetched (rows and children) for the synchronous path. */
  async dueAsync(now: number, limit: number): Promise<string[]> {
    const shards = [...this.#held.keys()];
    if (shards.length === 0) return [];
    const { value } = await this.#fresh(() =>
      this.#q<{ id: string }>(
        `SELECT id FROM callbacks
         WHERE due_at IS NOT NULL AND due_at <= $1 AND shard = ANY($2::int[])
         ORDER BY due_at LIMIT $3`,
        [now, shards, limit],
      ),
    );
    const ids = value.map((r) => r.id);
    if (ids.length === 0) return ids;
    // A due callback may time out, which orphans its active subtree: fetch it whole.
    const fresh = await this.prefetch({ ids, subtree: true });
    // A stale row is simply due again next time.
    return fresh ? ids : ids.filter((id) => this.#fetched.rows.has(id));
  }

  /**
   * Ids of callbacks in these shards that owe a step invocation, with their rows (and active
   * subtrees) fetched: after a takeover, the new owner runs each before anything else.
   */
  async owedAsync(shards: readonly number[]): Promise<string[]> {
    if (shards.length === 0) return [];
    const { value } = await this.#fresh(() =>
      this.#q<{ id: string }>(
        'SELECT id FROM callbacks WHERE owed AND shard = ANY($1::int[]) ORDER BY seq',
        [[...shards]],
      ),
    );
    const ids = value.map((r) => r.id);
    if (ids.length === 0) return ids;
    const fresh = await this.prefetch({ ids, subtree: true });
    return fresh ? ids : ids.filter((id) => this.#fetched.rows.has(id));
  }

  /** A callback's journal entries (JSON) after `afterSeq`, oldest first, as committed. */
  async history(id: string, afterSeq: number, limit: number): Promise<string[]> {
    const { value } = await this.#fresh(() =>
      this.#q<{ entry: string }>(
        'SELECT entry FROM journal WHERE callback_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
        [id, afterSeq, limit],
      ),
    );
    return value.map((r) => r.entry);
  }

  /**
   * Removes deduplication keys applied before `before`, at most `limit` (any replica may run
   * it: outside every lease transaction, and what it removes is past every owner's window).
   */
  async pruneKeys(before: number, limit: number): Promise<number> {
    try {
      const rows = await this.#q<{ n: number }>(
        `WITH gone AS (DELETE FROM dedup WHERE ctid = ANY(ARRAY(
           SELECT ctid FROM dedup WHERE at < $1 LIMIT $2)) RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [before, limit],
      );
      return rows[0]?.n ?? 0;
    } catch (err) {
      throw this.#unavailable('pruning deduplication keys', err);
    }
  }

  /** Counts per anchor and status of the given shards (as committed). */
  async shardCounts(
    shards: readonly number[],
  ): Promise<{ anchor: string; status: CallbackStatus; count: number }[]> {
    if (shards.length === 0) return [];
    const { value } = await this.#fresh(() =>
      this.#q<{ anchor: string; status: CallbackStatus; count: number }>(
        `SELECT anchor, status, count(*)::int AS count FROM callbacks
         WHERE shard = ANY($1::int[]) GROUP BY anchor, status`,
        [[...shards]],
      ),
    );
    return value;
  }

  // ---- writes ---------------------------------------------------------------------------------

  /** Commits refused by the fence (a lease lost or taken over), for stats and tests. */
  fencedOut = 0;

  /**
   * One group commit in one statement: the fence (share-locks the leases of every shard
   * touched, raises if one is not held at its epoch) and every write as data-modifying CTEs,
   * so the batch is one round trip and one implicit transaction.
   */
  async commit(batch: StoreBatch): Promise<CommitResult> {
    let statement;
    try {
      statement = buildCommit(batch, {
        node: this.#node,
        shards: this.cluster.shards,
        held: this.#held,
      });
    } catch (err) {
      this.fencedOut++;
      throw err instanceof LeaseLostError
        ? new LeaseLostError(`${err.message} (${this.name})`, { cause: err })
        : err;
    }
    let result: { fenced: number; inserted: string[] | null }[] | undefined;
    for (let attempt = 1; !result; attempt++) {
      try {
        result = await this.#q(statement.text, statement.params);
      } catch (err) {
        const code = pgCode(err);
        // A deadlock (another replica's commit on the same keys) rolled the statement back:
        // nothing of it is written, so it is simply run again.
        if ((code === '40P01' || code === '40001') && attempt < 3) continue;
        if (code === 'CB001') this.fencedOut++;
        throw this.#unavailable('commit', err);
      }
    }
    this.#commitNo++;
    const written = (id: string) => {
      if (this.#readsInFlight > 0) this.#writtenAt.set(id, this.#commitNo);
      this.#fetched.rows.delete(id);
    };
    for (const r of batch.rows) written(r.id);
    for (const id of batch.deletes) written(id);
    for (const d of batch.dedup) this.#fetched.keys.set(`${d.id}\u0000${d.key}`, true);
    if (statement.inserted.length === 0) return {};
    const inserted = new Set(result[0]?.inserted ?? []);
    const conflicts = statement.inserted.filter((id) => !inserted.has(id));
    return conflicts.length > 0 ? { conflicts } : {};
  }

  // ---- early events ---------------------------------------------------------------------------

  /**
   * Holds an early event: inserts its row, committed when this resolves, unless its anchor would
   * pass `maxEvents` or `maxBytes` or the event is held already (same `dedupKey`). Holds of one
   * anchor are serialized across replicas (a transaction-scoped advisory lock on the anchor, then
   * the count read in a snapshot taken after it), so concurrent holds never overshoot the bounds;
   * a claim or expiry committing meanwhile can only make a hold be refused early (retryable).
   */
  async holdEarly(
    row: Omit<SharedEarlyRow, 'seq'>,
    bounds: { readonly maxEvents: number; readonly maxBytes: number },
  ): Promise<HoldEarlyOutcome> {
    const bytes = Buffer.byteLength(row.data, 'utf8');
    try {
      return await this.#tx(async (q) => {
        await q('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [
          `callback-engine-early:${this.#schema}`,
          row.anchor,
        ]);
        const [r] = await q<{
          seq: number | null;
          prior_anchor: string | null;
          prior_expires: number | null;
          n: number;
          b: number;
        }>(
          `WITH prior AS (SELECT anchor, expires_at::float8 AS expires_at FROM early_events
             WHERE dedup_key = $1::text),
           cur AS (SELECT count(*)::int AS n, coalesce(sum(bytes), 0)::float8 AS b
             FROM early_events WHERE anchor = $2::text),
           ins AS (INSERT INTO early_events
               (dedup_key, anchor, corr_key, status, data, bytes, held_at, expires_at)
             SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::int, $7::bigint, $8::bigint
             FROM cur WHERE NOT EXISTS (SELECT 1 FROM prior)
               AND cur.n + 1 <= $9::int AND cur.b + $6::int <= $10::float8
             ON CONFLICT (dedup_key) DO NOTHING RETURNING seq::float8 AS seq)
           SELECT (SELECT seq FROM ins) AS seq, (SELECT anchor FROM prior) AS prior_anchor,
             (SELECT expires_at FROM prior) AS prior_expires, cur.n, cur.b FROM cur`,
          [
            row.dedupKey,
            row.anchor,
            encodeKey(row.correlationKey),
            row.status,
            row.data,
            bytes,
            row.heldAt,
            row.expiresAt,
            bounds.maxEvents,
            bounds.maxBytes,
          ],
        );
        if (r!.seq !== null) return { kind: 'held' as const };
        if (r!.prior_anchor !== null)
          return {
            kind: 'duplicate' as const,
            anchor: r!.prior_anchor,
            expiresAt: r!.prior_expires!,
          };
        if (r!.n + 1 <= bounds.maxEvents && r!.b + bytes <= bounds.maxBytes)
          // Held by a concurrent delivery of the same event (under another anchor's lock).
          return { kind: 'duplicate' as const, anchor: row.anchor, expiresAt: row.expiresAt };
        return { kind: 'full' as const, count: r!.n, bytes: r!.b };
      });
    } catch (err) {
      throw this.#unavailable('holding an early event', err);
    }
  }

  /**
   * The early events held under a correlation key, in arrival order, for the callback just
   * committed with it. Their rows stay until the commit that applies them; the row locks taken
   * here only make the read wait for an expiry deleting them right now (then they are gone).
   */
  async claimEarly(correlationKey: string): Promise<SharedEarlyRow[]> {
    const { value } = await this.#fresh(() =>
      this.#q<EarlyRow>(
        `SELECT ${EARLY_COLUMNS} FROM early_events e
         WHERE e.corr_key = $1 AND NOT EXISTS (
           SELECT 1 FROM callbacks k JOIN dedup d ON d.callback_id = k.id
           WHERE k.corr_key = e.corr_key AND d.key = e.dedup_key)
         ORDER BY e.seq FOR UPDATE OF e`,
        [encodeKey(correlationKey)],
      ),
    );
    return value.map(fromEarly);
  }

  /** Removes one held early event (no callback will apply it). */
  async dropEarly(dedupKey: string): Promise<void> {
    try {
      await this.#q('DELETE FROM early_events WHERE dedup_key = $1', [dedupKey]);
    } catch (err) {
      throw this.#unavailable('removing an early event', err);
    }
  }

  /**
   * Deletes the early events whose retention passed at `now` and for which no active callback
   * exists (those are applied instead, see {@link earlyWithCallbacks}). Every replica may run it:
   * a row is deleted, and so returned, by one of them only.
   * @returns the expired events.
   */
  async expireEarly(now: number): Promise<SharedEarlyRow[]> {
    try {
      const rows = await this.#q<EarlyRow>(
        `DELETE FROM early_events e WHERE e.expires_at <= $1 AND NOT EXISTS (${ACTIVE_HOLDER})
         RETURNING ${EARLY_COLUMNS}`,
        [now],
      );
      return rows.map(fromEarly).sort((x, y) => x.seq - y.seq);
    } catch (err) {
      throw this.#unavailable('expiring early events', err);
    }
  }

  /**
   * Held early events whose callback exists and is active (their claim did not commit: the
   * creating replica stopped, or a hold raced the create), with that callback's row, in arrival
   * order: those past their retention at `expiredBy`, or those whose callback is in `shards`.
   */
  async earlyWithCallbacks(
    query: { readonly expiredBy: number } | { readonly shards: readonly number[] },
  ): Promise<{ event: SharedEarlyRow; callback: StoredCallback }[]> {
    const where = 'expiredBy' in query ? 'e.expires_at <= $1::bigint' : 'c.shard = ANY($1::int[])';
    const param = 'expiredBy' in query ? query.expiredBy : [...query.shards];
    const { value } = await this.#fresh(() =>
      this.#q<Row & { e: EarlyRow }>(
        `SELECT ${CALLBACK_COLUMNS},
           json_build_object('seq', e.seq::float8, 'dedup_key', e.dedup_key, 'anchor', e.anchor,
             'corr_key', e.corr_key, 'status', e.status, 'data', e.data,
             'held_at', e.held_at::float8, 'expires_at', e.expires_at::float8) AS e
         FROM early_events e JOIN callbacks c
           ON c.corr_key = e.corr_key AND c.status NOT IN (${TERMINAL_SQL})
           LEFT JOIN snapshots s ON s.id = c.id
         WHERE ${where} ORDER BY e.seq LIMIT 1000`,
        [param],
      ),
    );
    return value.map((r) => ({ event: fromEarly(r.e), callback: fromPg(r) }));
  }

  /** Totals of the held early events and the earliest expiry (as committed). */
  async earlySummary(): Promise<{ held: number; bytes: number; nextExpiry: number | undefined }> {
    const { value } = await this.#fresh(() =>
      this.#q<{ n: number; b: number; next: number | null }>(
        `SELECT count(*)::int AS n, coalesce(sum(bytes), 0)::float8 AS b,
           min(expires_at)::float8 AS next FROM early_events`,
      ),
    );
    const r = value[0]!;
    return { held: r.n, bytes: r.b, nextExpiry: r.next ?? undefined };
  }

  // ---- inbox ------------------------------------------------------------------------------------

  /**
   * Queues a report durably for the next owner of its callback's shard (committed when this
   * resolves). Only while the shard has no live owner: a report queued behind the back of a
   * live owner could be overtaken by a later report sent to that owner directly. The shard's
   * row is share-locked, so a takeover waits for the report and then finds it in the inbox.
   * @returns `queued`; `duplicate` if this deduplication key was queued or applied already;
   *   `owned` if the shard has a live owner (forward to it instead).
   */
  async enqueue(entry: {
    callbackId: string;
    dedupKey: string;
    message: string;
    /** Wall-clock ms: refused (a stale replica) if the database's clock is past it. */
    notAfter?: number;
  }): Promise<'queued' | 'duplicate' | 'owned' | 'stale'> {
    const shard = shardOf(entry.callbackId, this.cluster.shards);
    try {
      return await this.#tx(async (q) => {
        const free = await q(
          `SELECT shard FROM shards
           WHERE shard = $1 AND (owner IS NULL OR expires_at <= now()) FOR SHARE`,
          [shard],
        );
        if (free.length === 0) return 'owned' as const;
        if (entry.notAfter !== undefined) {
          const late = await q<{ late: boolean }>(
            'SELECT now() > to_timestamp($1::float8 / 1000) AS late',
            [entry.notAfter],
          );
          if (late[0]?.late) return 'stale' as const;
        }
        const rows = await q(
          `INSERT INTO inbox (shard, callback_id, dedup_key, message)
           SELECT $1, $2, $3, $4
           WHERE NOT EXISTS (SELECT 1 FROM dedup WHERE callback_id = $2 AND key = $3)
           ON CONFLICT (callback_id, dedup_key) DO NOTHING RETURNING seq`,
          [shard, entry.callbackId, entry.dedupKey, entry.message],
        );
        return rows.length > 0 ? ('queued' as const) : ('duplicate' as const);
      });
    } catch (err) {
      throw this.#unavailable('queueing a report', err);
    }
  }

  /** The live owner of a shard, as the database has it now. */
  async ownerOf(shard: number): Promise<string | undefined> {
    const { value } = await this.#fresh(() =>
      this.#q<{ owner: string }>(
        'SELECT owner FROM shards WHERE shard = $1 AND owner IS NOT NULL AND expires_at > now()',
        [shard],
      ),
    );
    return value[0]?.owner;
  }

  /** Queued reports of the given shards (default: every held shard), oldest first. */
  async inbox(limit: number, only?: readonly number[]): Promise<InboxEntry[]> {
    const shards = only ? [...only] : [...this.#held.keys()];
    if (shards.length === 0) return [];
    const { value } = await this.#fresh(() =>
      this.#q<{ seq: number; callback_id: string; dedup_key: string; message: string }>(
        `SELECT seq::float8 AS seq, callback_id, dedup_key, message FROM inbox
         WHERE shard = ANY($1::int[]) ORDER BY seq LIMIT $2`,
        [shards, limit],
      ),
    );
    return value.map((r) => ({
      seq: r.seq,
      callbackId: r.callback_id,
      dedupKey: r.dedup_key,
      message: r.message,
    }));
  }

  // ---- leases -----------------------------------------------------------------------------------

  /** Whether this replica holds the shard of `id` (its lease may still have ended). */
  owns(id: string): boolean {
    return this.#held.has(shardOf(id, this.cluster.shards));
  }

  /** The shards this replica holds and their epochs. */
  held(): ReadonlyMap<number, number> {
    return this.#held;
  }

  /**
   * One lease round: heartbeat, renew what is held, take a fair share of free or expired
   * shards, and give back what exceeds the fair share (a replica joined).
   * @returns what changed.
   */
  async leaseRound(options: { give: boolean }): Promise<{
    lost: number[];
    gained: ShardLease[];
    released: number[];
    members: string[];
    owners: Map<number, string>;
  }> {
    const node = this.#node;
    const ttl = this.cluster.leaseTtlMs;
    const held = [...this.#held.entries()];
    let lost: number[] = [];
    let gained: ShardLease[] = [];
    let released: number[] = [];
    let members: string[] = [];
    const owners = new Map<number, string>();
    try {
      await this.#tx(async (q) => {
        await q("SELECT set_config('lock_timeout', $1, true)", [
          String(Math.max(200, Math.floor(ttl / 4))),
        ]);
        await q(
          `INSERT INTO members (node, seen_at) VALUES ($1, now())
           ON CONFLICT (node) DO UPDATE SET seen_at = now()`,
          [node],
        );
        const renewed = await q<{ shard: number }>(
          `UPDATE shards SET expires_at = now() + $1 * interval '1 millisecond'
           FROM unnest($2::int[], $3::bigint[]) AS h(shard, epoch)
           WHERE shards.shard = h.shard AND shards.epoch = h.epoch AND shards.owner = $4
             AND shards.expires_at > now()
           RETURNING shards.shard`,
          [ttl, held.map((h) => h[0]), held.map((h) => h[1]), node],
        );
        const kept = new Set(renewed.map((r) => r.shard));
        lost = held.map((h) => h[0]).filter((s) => !kept.has(s));
        members = (
          await q<{ node: string }>(
            `SELECT node FROM members WHERE seen_at > now() - $1 * interval '1 millisecond'
             ORDER BY node`,
            [ttl],
          )
        ).map((r) => r.node);
        const fair = Math.ceil(this.cluster.shards / Math.max(1, members.length));
        const want = options.give ? fair - kept.size : 0;
        if (want > 0) {
          gained = await q<{ shard: number; epoch: number }>(
            `UPDATE shards SET owner = $1, epoch = epoch + 1,
               expires_at = now() + $2 * interval '1 millisecond'
             WHERE shard IN (
               SELECT shard FROM shards WHERE owner IS NULL OR expires_at <= now()
               ORDER BY shard LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING shard, epoch::float8 AS epoch`,
            [node, ttl, want],
          );
        } else if (options.give && kept.size > fair) {
          // Another replica joined: give back the excess (the highest shards).
          released = [...kept].sort((x, y) => y - x).slice(0, kept.size - fair);
        }
        for (const r of await q<{ shard: number; owner: string }>(
          'SELECT shard, owner FROM shards WHERE owner IS NOT NULL AND expires_at > now()',
        ))
          owners.set(r.shard, r.owner);
        // Now and then: replicas not seen for a day are forgotten.
        if (Math.random() < 0.01)
          await q("DELETE FROM members WHERE seen_at < now() - interval '1 day'");
      });
    } catch (err) {
      throw this.#unavailable('renewing leases', err);
    }
    for (const s of lost) this.#held.delete(s);
    // Gained shards are adopted by the caller, together with whatever must precede their use.
    return { lost, gained, released, members, owners };
  }

  /** Starts committing for shards a lease round gained, at their epochs. */
  adopt(leases: readonly ShardLease[]): void {
    for (const g of leases) this.#held.set(g.shard, g.epoch);
  }

  /** Stops committing for these shards (locally, at once): the lease is treated as lost. */
  drop(shards: readonly number[]): void {
    for (const s of shards) this.#held.delete(s);
  }

  /**
   * Gives shards back at once (graceful handover): their leases end now, so another replica
   * takes them without waiting for expiry. Call after their writes committed.
   */
  async release(shards: readonly number[]): Promise<void> {
    const pairs = shards
      .map((s) => [s, this.#held.get(s)] as const)
      .filter((x): x is readonly [number, number] => x[1] !== undefined);
    for (const s of shards) this.#held.delete(s);
    if (pairs.length === 0) return;
    try {
      await this.#q(
        `UPDATE shards SET owner = NULL, expires_at = '-infinity'
         FROM unnest($1::int[], $2::bigint[]) AS h(shard, epoch)
         WHERE shards.shard = h.shard AND shards.epoch = h.epoch AND shards.owner = $3`,
        [pairs.map((x) => x[0]), pairs.map((x) => x[1]), this.#node],
      );
    } catch (err) {
      throw this.#unavailable('releasing leases', err);
    }
  }

  /** Leaves the cluster: gives back every shard and removes this replica's heartbeat. */
  async leave(): Promise<void> {
    await this.release([...this.#held.keys()]);
    try {
      await this.#q('DELETE FROM members WHERE node = $1', [this.#node]);
    } catch (err) {
      throw this.#unavailable('leaving', err);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#held.clear();
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.end().catch(() => {});
  }
}
