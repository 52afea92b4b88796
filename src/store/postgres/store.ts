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
import { durationMs } from '../../duration.js';
import {
  InvalidArgumentError,
  LeaseLostError,
  SecretMismatchError,
  StoreIncompatibleError,
  StoreLockedError,
  StoreUnavailableError,
  toError,
} from '../../errors.js';
import type { CallbackStatus } from '../../lifecycle/statuses.js';
import { checkKnownKeys } from '../../keys.js';
import { keyringMismatch, type KeyringPeer } from '../../token.js';
import { toEarlyRow, type EarlyRow } from '../row.js';
import { DEFAULT_SHARDS, shardOf, type ShardLease } from '../shards.js';
import type {
  CommitResult,
  EarlyEventRow,
  DurableStore,
  InboxEntry,
  Prefetch,
  StoreBatch,
  StoredCallback,
  StoreListQuery,
  StoreOpenContext,
  StoreRecovery,
} from '../store.js';
import { buildCommit } from './commit.js';
import {
  EARLY_SCHEMA,
  MIGRATE_1_TO_2,
  POSTGRES_SCHEMA_VERSION,
  SCHEMA_V2,
  TERMINAL_SQL,
} from './schema.js';
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

export { POSTGRES_SCHEMA_VERSION } from './schema.js';

/** Options of {@link postgresStore}. */
export interface PostgresStoreOptions {
  /** A PostgreSQL connection string, e.g. `postgres://app@db:5432/app`. */
  connectionString: string;
  /** The schema holding the tables; created on open. Replicas of one cluster share it. */
  schema: string;
  /** Number of shards (fixed when the schema is created). @default 64 */
  shards?: number;
  /** How long a shard lease lasts without renewal (ms, or an ISO 8601 duration such as `"PT10S"`). @default 10000 */
  leaseTtl?: number | string;
  /** How often a replica renews its leases and rebalances. @default 3000 */
  renewInterval?: number | string;
  /** How long a forwarded report waits for its owner before it is queued durably. @default 2000 */
  forwardTimeout?: number | string;
  /**
   * The forwarding transport: NATS request-reply. Without it, replicas forward to each other
   * over PostgreSQL LISTEN/NOTIFY on one extra connection each (slower than NATS, see the
   * benchmarks). Either way, a report whose owner does not answer in time is queued durably
   * (202) and applied by the owner from the inbox.
   */
  nats?: { servers: string | string[] } | undefined;
  /** Connections in the pool. @default 8 */
  maxConnections?: number;
}

const OPTION_KEYS: readonly string[] = Object.freeze([
  'connectionString',
  'schema',
  'shards',
  'leaseTtl',
  'renewInterval',
  'forwardTimeout',
  'nats',
  'maxConnections',
]);

/** The resolved cluster settings of a PostgreSQL store. */
export interface ClusterSettings {
  readonly shards: number;
  readonly leaseTtlMs: number;
  readonly renewIntervalMs: number;
  readonly forwardTimeoutMs: number;
  readonly nats: { servers: string | string[] } | undefined;
  /** A prefix for transport subjects, unique per database and schema. */
  readonly subject: string;
}

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

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

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

/** Marks a PostgreSQL store across copies of this package (an `instanceof` would not). */
const BRAND = Symbol.for('callback-engine.postgresStore');

/** Whether a store is a {@link PostgresStore} (of any copy of this package). */
export function isPostgresStore(store: unknown): store is PostgresStore {
  return typeof store === 'object' && store !== null && BRAND in store;
}

/** The PostgreSQL store; see {@link postgresStore}. */
export class PostgresStore implements DurableStore {
  readonly kind = 'durable' as const;
  readonly [BRAND] = true;
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

  async open(context: StoreOpenContext): Promise<StoreRecovery> {
    let Pool: typeof pg.Pool;
    try {
      Pool = (await import('pg')).default.Pool;
    } catch (err) {
      throw new StoreUnavailableError(
        'postgresStore() needs the package pg (node-postgres 8.x): npm install pg',
        { cause: err },
      );
    }
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
      await this.#migrate(context);
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

  async #migrate(context: StoreOpenContext): Promise<void> {
    await this.#tx(async (q) => {
      // One migrator at a time across replicas.
      await q('SELECT pg_advisory_xact_lock(hashtext($1))', [`callback-engine:${this.#schema}`]);
      await q(`CREATE SCHEMA IF NOT EXISTS "${this.#schema}"`);
      const hasMeta = await q<{ n: number }>(
        `SELECT count(*)::int AS n FROM information_schema.tables
         WHERE table_schema = $1 AND table_name = 'meta'`,
        [this.#schema],
      );
      if (hasMeta[0]!.n === 0) {
        await q(SCHEMA_V2(this.cluster.shards));
        await q(
          `INSERT INTO meta (key, value) VALUES ('schema_version', $1), ('machine_version', $2), ('shards', $3)`,
          [String(POSTGRES_SCHEMA_VERSION), context.machineVersion, String(this.cluster.shards)],
        );
        await this.#checkKeys(q, context);
        return;
      }
      const meta = new Map(
        (await q<{ key: string; value: string }>('SELECT key, value FROM meta')).map((r) => [
          r.key,
          r.value,
        ]),
      );
      const version = Number(meta.get('schema_version') ?? 0);
      if (version > POSTGRES_SCHEMA_VERSION)
        throw new StoreIncompatibleError(
          `${this.name} has schema version ${version}; this engine understands up to ${POSTGRES_SCHEMA_VERSION} (upgrade callback-engine)`,
        );
      if (meta.get('machine_version') !== context.machineVersion)
        throw new StoreIncompatibleError(
          `${this.name} was written by lifecycle machine version ${meta.get('machine_version') ?? '(none)'}; this engine runs ${context.machineVersion}`,
        );
      if (Number(meta.get('shards')) !== this.cluster.shards)
        throw new StoreIncompatibleError(
          `${this.name} has ${meta.get('shards')} shards; this engine was given ${this.cluster.shards} (the number is fixed per schema)`,
        );
      if (version === 1) {
        // Early events came after version 1 was first written: some version-1 schemas lack them.
        const had = await q<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [
          `"${this.#schema}".early_events`,
        ]);
        if (had[0]?.t == null) await q(EARLY_SCHEMA);
        await q(MIGRATE_1_TO_2);
      }
      await this.#checkKeys(q, context);
    });
  }

  /**
   * Replicas of one schema must share their signing keys: compares this replica's key
   * fingerprints (never the keys) with those last recorded for the schema and those of every live
   * replica (see `keyringMismatch`), then records its own. Runs under the migration lock.
   * @throws {@link SecretMismatchError} naming the fix.
   */
  async #checkKeys(
    q: <R>(text: string, params?: unknown[]) => Promise<R[]>,
    context: StoreOpenContext,
  ): Promise<void> {
    const mine = context.keyFingerprints;
    if (mine === undefined || mine.length === 0) return;
    const own = `keys:${context.node}`;
    const rows = await q<{ key: string; value: string; live: boolean | null }>(
      `SELECT m.key, m.value, b.seen_at > now() - $1 * interval '1 millisecond' AS live
         FROM meta m LEFT JOIN members b ON m.key = 'keys:' || b.node
        WHERE m.key = 'keys' OR (m.key LIKE 'keys:%' AND m.key <> $2)`,
      [this.cluster.leaseTtlMs, own],
    );
    const peers: KeyringPeer[] = [];
    for (const r of rows) {
      if (r.key !== 'keys' && r.live !== true) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(r.value);
      } catch {
        continue;
      }
      const fingerprints = (parsed as { keys?: unknown } | null)?.keys;
      if (!Array.isArray(fingerprints) || !fingerprints.every((f) => typeof f === 'string'))
        continue;
      peers.push({
        name:
          r.key === 'keys'
            ? 'the replica that last joined this schema'
            : `live replica ${JSON.stringify(r.key.slice(5))}`,
        fingerprints,
      });
    }
    const problem = keyringMismatch(mine, peers);
    if (problem !== undefined) throw new SecretMismatchError(`${this.name}: ${problem}`);
    await q(
      `WITH v AS (SELECT json_build_object('keys', $1::json, 'at', extract(epoch FROM now()))::text AS value)
       INSERT INTO meta (key, value) SELECT k, v.value FROM v, unnest(ARRAY['keys', $2]) AS k
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
      [JSON.stringify(mine), own],
    );
    // Replicas gone for a day (their member row is gone too) leave no keys behind.
    await q(
      `DELETE FROM meta m WHERE m.key LIKE 'keys:%'
          AND NOT EXISTS (SELECT 1 FROM members b WHERE m.key = 'keys:' || b.node)
          AND (m.value::json->>'at')::float8 < extract(epoch FROM now() - interval '1 day')`,
    );
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
    const where = ['c.seq > $1'];
    const params: unknown[] = [query.afterSeq];
    if (query.anchor !== undefined) {
      params.push(query.anchor);
      where.push(`c.anchor = $${params.length}`);
    }
    if (query.statuses && query.statuses.length > 0) {
      params.push([...query.statuses]);
      where.push(`c.status = ANY($${params.length}::text[])`);
    }
    params.push(query.limit);
    const text = `${SELECT_CALLBACK} WHERE ${where.join(' AND ')} ORDER BY c.seq LIMIT $${params.length}`;
    const { value } = await this.#fresh(() => this.#q<Row>(text, params));
    return value.map(fromPg);
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

/** Resolves and checks {@link PostgresStoreOptions}. */
function settings(options: PostgresStoreOptions): ClusterSettings {
  const shards = options.shards ?? DEFAULT_SHARDS;
  if (!Number.isSafeInteger(shards) || shards < 1 || shards > 4096)
    throw new InvalidArgumentError(
      `postgresStore options.shards must be an integer from 1 to 4096 (got ${String(options.shards)})`,
    );
  const ms = (key: 'leaseTtl' | 'renewInterval' | 'forwardTimeout', dflt: number): number => {
    const v = options[key];
    const out =
      v === undefined
        ? dflt
        : typeof v === 'number'
          ? v
          : durationMs(`postgresStore options.${key}`, v, 0);
    if (!Number.isFinite(out))
      throw new InvalidArgumentError(
        `postgresStore options.${key} must be a number of ms or an ISO 8601 duration`,
      );
    if (!(out > 0))
      throw new InvalidArgumentError(`postgresStore options.${key} must be longer than zero`);
    return out;
  };
  const leaseTtlMs = ms('leaseTtl', 10_000);
  const renewIntervalMs = ms('renewInterval', 3_000);
  if (renewIntervalMs * 2 > leaseTtlMs)
    throw new InvalidArgumentError(
      `postgresStore options.renewInterval (${renewIntervalMs} ms) must be at most half of leaseTtl (${leaseTtlMs} ms), so a lease is renewed before it ends`,
    );
  const nats = options.nats;
  if (
    nats !== undefined &&
    (typeof nats !== 'object' ||
      nats === null ||
      !(typeof nats.servers === 'string' || Array.isArray(nats.servers)))
  )
    throw new InvalidArgumentError(
      'postgresStore options.nats must be { servers: string | string[] }',
    );
  let db = 'db';
  try {
    db = new URL(options.connectionString).pathname.replace(/\W/g, '') || 'db';
  } catch {
    // keep 'db'
  }
  return {
    shards,
    leaseTtlMs,
    renewIntervalMs,
    forwardTimeoutMs: ms('forwardTimeout', 2_000),
    nats,
    subject: `cbe.${db}.${options.schema}`,
  };
}

/**
 * A durable store in a PostgreSQL schema, shared by every replica of a
 * service: engines with distinct `node` names and the same `secrets` on one
 * schema form a cluster. Each callback belongs to one of `shards` shards,
 * leased by one replica at a time; every commit is fenced by its leases.
 * Needs the package `pg` (node-postgres 8.x), loaded when the store opens;
 * replicas forward reports to each other over PostgreSQL, or over NATS (the
 * package `nats`) when `nats` is set.
 *
 * @param options - connection, schema and cluster settings.
 * @returns the store, for `createCallbackEngine({ store })`.
 * @throws {@link InvalidArgumentError} for a bad option.
 * @example
 * ```ts
 * import { createCallbackEngine } from 'callback-engine';
 * import { postgresStore } from 'callback-engine/postgres';
 *
 * const engine = createCallbackEngine({
 *   node: process.env.HOSTNAME!, // distinct per replica
 *   secrets: [process.env.CALLBACK_SECRET!], // the same on every replica
 *   store: postgresStore({
 *     connectionString: process.env.DATABASE_URL!,
 *     schema: 'callbacks',
 *     nats: { servers: process.env.NATS_URL! },
 *   }),
 * });
 * await engine.ready(); // this replica holds its share of the shards
 * ```
 */
export function postgresStore(options: PostgresStoreOptions): PostgresStore {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(
      'postgresStore() needs an options object with connectionString and schema',
    );
  checkKnownKeys('postgresStore options', options, OPTION_KEYS);
  if (typeof options.connectionString !== 'string' || options.connectionString.length === 0)
    throw new InvalidArgumentError('postgresStore options.connectionString must be a string');
  if (typeof options.schema !== 'string' || !SCHEMA_RE.test(options.schema))
    throw new InvalidArgumentError(
      `postgresStore options.schema must be a lower-case SQL identifier (got ${JSON.stringify(options.schema)})`,
    );
  const max = options.maxConnections;
  if (max !== undefined && (!Number.isSafeInteger(max) || max < 2 || max > 100))
    throw new InvalidArgumentError(
      `postgresStore options.maxConnections must be an integer from 2 to 100 (got ${String(max)})`,
    );
  return new PostgresStore(options, settings(options));
}

/** Drops a schema and everything in it (for tests and demos). */
export async function dropSchema(connectionString: string, schema: string): Promise<void> {
  if (!SCHEMA_RE.test(schema)) throw new InvalidArgumentError(`not a schema name: ${schema}`);
  const { Client } = (await import('pg')).default;
  const client = new Client({ connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end().catch(() => {});
  }
}
