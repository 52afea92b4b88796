/**
 * `sqliteStore()`: a durable store in one embedded SQLite file, on
 * better-sqlite3 (loaded only when the store opens). WAL journal, one
 * transaction per group commit, exclusive lock: one engine per file.
 *
 * @module
 */

import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import {
  InvalidArgumentError,
  StoreIncompatibleError,
  StoreLockedError,
  StoreUnavailableError,
} from '../errors.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import { checkKnownKeys } from '../keys.js';
import { ROW_COLUMNS, toEarlyRow, toStored, type EarlyRow, type Row } from './row.js';
import type {
  DurableStore,
  EarlyEventRow,
  StoreBatch,
  StoredCallback,
  StoreListQuery,
  StoreOpenContext,
  StoreRecovery,
} from './store.js';

/** Schema version written to `PRAGMA user_version`; a newer file is refused. */
export const SQLITE_SCHEMA_VERSION = 1;

/** Options of {@link sqliteStore}. */
export interface SqliteStoreOptions {
  /** Path of the database file; created if missing. */
  path: string;
  /**
   * SQLite's `synchronous` setting. `'full'` fsyncs every commit (an acknowledged report
   * survives a power loss); `'normal'` survives a process crash but not a power loss, and is
   * faster. Each group commit is one transaction either way.
   * @default 'full'
   */
  synchronous?: 'full' | 'normal';
  /**
   * How long a write waits for a lock held elsewhere before it fails, in ms.
   * @default 2000
   */
  busyTimeoutMs?: number;
  /**
   * Hard cap on the database size in bytes; a commit that would grow it further fails
   * with `StoreUnavailableError`, as a full disk does.
   * @default none
   */
  maxBytes?: number;
}

const SQLITE_OPTION_KEYS: readonly string[] = Object.freeze([
  'path',
  'synchronous',
  'busyTimeoutMs',
  'maxBytes',
]);

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS callbacks (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  anchor TEXT NOT NULL,
  status TEXT NOT NULL,
  due_at INTEGER,
  idem_key TEXT,
  corr_key TEXT,
  parent_id TEXT,
  body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS callbacks_seq ON callbacks (seq);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_anchor_status ON callbacks (anchor, status);
CREATE UNIQUE INDEX IF NOT EXISTS callbacks_idem ON callbacks (idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_corr ON callbacks (corr_key, seq) WHERE corr_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_parent ON callbacks (parent_id, seq) WHERE parent_id IS NOT NULL;
`;

/**
 * Held early events (anchors with `early`). Added without a schema version step: the statement
 * is idempotent and runs at every open, so a file of schema 1 written before it simply gains the
 * table, and an older engine opening a newer file ignores it.
 */
const EARLY_SCHEMA = `
CREATE TABLE IF NOT EXISTS early_events (
  seq INTEGER PRIMARY KEY,
  dedup_key TEXT NOT NULL UNIQUE,
  anchor TEXT NOT NULL,
  corr_key TEXT NOT NULL,
  status TEXT NOT NULL,
  data TEXT NOT NULL,
  held_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
`;

const sqliteCode = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;

class SqliteStore implements DurableStore {
  readonly kind = 'durable' as const;
  readonly name: string;
  readonly #path: string;
  readonly #synchronous: 'full' | 'normal';
  readonly #busyTimeoutMs: number;
  readonly #maxBytes: number | undefined;
  #db: BetterSqlite3.Database | undefined;
  #ino = 0;
  #s!: {
    upsert: BetterSqlite3.Statement;
    insert: BetterSqlite3.Statement;
    update: BetterSqlite3.Statement;
    updateBody: BetterSqlite3.Statement;
    del: BetterSqlite3.Statement;
    load: BetterSqlite3.Statement;
    byIdem: BetterSqlite3.Statement;
    byCorr: BetterSqlite3.Statement;
    children: BetterSqlite3.Statement;
    nextDue: BetterSqlite3.Statement;
    due: BetterSqlite3.Statement;
    earlyAll: BetterSqlite3.Statement;
  };
  #write!: (batch: StoreBatch) => void;
  readonly #listStatements = new Map<string, BetterSqlite3.Statement>();

  constructor(options: SqliteStoreOptions) {
    this.#path = resolve(options.path);
    this.name = `sqlite:${this.#path}`;
    this.#synchronous = options.synchronous ?? 'full';
    this.#busyTimeoutMs = options.busyTimeoutMs ?? 2000;
    this.#maxBytes = options.maxBytes;
  }

  async open(context: StoreOpenContext): Promise<StoreRecovery> {
    let Database: typeof BetterSqlite3;
    try {
      Database = (await import('better-sqlite3')).default;
    } catch (err) {
      throw new StoreUnavailableError(
        'sqliteStore() needs the package better-sqlite3 (12.x): npm install better-sqlite3@12',
        { cause: err },
      );
    }
    let db: BetterSqlite3.Database;
    try {
      db = new Database(this.#path, { timeout: 0 });
    } catch (err) {
      throw new StoreUnavailableError(`cannot open ${this.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      // Exclusive locking: the first write below takes the file's lock and keeps it until close,
      // so a second engine on the same file is refused instead of corrupting it.
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.exec('BEGIN EXCLUSIVE');
      db.exec('COMMIT');
    } catch (err) {
      db.close();
      const code = sqliteCode(err);
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
        throw new StoreLockedError(
          `${this.name} is in use by another engine (one engine per SQLite file)`,
          { cause: err },
        );
      throw new StoreUnavailableError(`cannot open ${this.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      this.#migrate(db, context);
      db.exec(EARLY_SCHEMA);
    } catch (err) {
      db.close();
      throw err;
    }
    db.pragma(`synchronous = ${this.#synchronous.toUpperCase()}`);
    db.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
    if (this.#maxBytes !== undefined) {
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`max_page_count = ${Math.max(1, Math.floor(this.#maxBytes / pageSize))}`);
    }
    this.#db = db;
    this.#ino = statSync(this.#path).ino;
    this.#prepare(db);
    const counts = (
      db
        .prepare('SELECT anchor, status, COUNT(*) AS count FROM callbacks GROUP BY anchor, status')
        .all() as {
        anchor: string;
        status: CallbackStatus;
        count: number;
      }[]
    ).map((r) => ({ anchor: r.anchor, status: r.status, count: r.count }));
    const maxSeq = (db.prepare('SELECT MAX(seq) AS m FROM callbacks').get() as { m: number | null })
      .m;
    return { counts, maxSeq: maxSeq ?? -1 };
  }

  #migrate(db: BetterSqlite3.Database, context: StoreOpenContext): void {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SQLITE_SCHEMA_VERSION)
      throw new StoreIncompatibleError(
        `${this.name} has schema version ${version}; this engine understands up to ${SQLITE_SCHEMA_VERSION} (upgrade callback-engine)`,
      );
    if (version === 0) {
      db.exec('BEGIN');
      db.exec(SCHEMA);
      db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(
        'machine_version',
        context.machineVersion,
      );
      db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION}`);
      db.exec('COMMIT');
      return;
    }
    const row = db.prepare("SELECT value FROM meta WHERE key = 'machine_version'").get() as
      { value: string } | undefined;
    if (row?.value !== context.machineVersion)
      throw new StoreIncompatibleError(
        `${this.name} was written by lifecycle machine version ${row?.value ?? '(none)'}; this engine runs ${context.machineVersion}`,
      );
  }

  #prepare(db: BetterSqlite3.Database): void {
    this.#s = {
      upsert: db.prepare(
        `INSERT INTO callbacks (${ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, due_at = excluded.due_at, body = excluded.body`,
      ),
      insert: db.prepare(
        `INSERT INTO callbacks (${ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      update: db.prepare('UPDATE callbacks SET status = ?, due_at = ?, body = ? WHERE id = ?'),
      // Only the body: the indexes on status and due time are not touched (3× cheaper a row).
      updateBody: db.prepare('UPDATE callbacks SET body = ? WHERE id = ?'),
      del: db.prepare('DELETE FROM callbacks WHERE id = ?'),
      load: db.prepare(`SELECT ${ROW_COLUMNS} FROM callbacks WHERE id = ?`),
      byIdem: db.prepare(`SELECT ${ROW_COLUMNS} FROM callbacks WHERE idem_key = ?`),
      byCorr: db.prepare(
        `SELECT ${ROW_COLUMNS} FROM callbacks WHERE corr_key = ? ORDER BY seq DESC LIMIT 1`,
      ),
      children: db.prepare('SELECT id FROM callbacks WHERE parent_id = ? ORDER BY seq').pluck(),
      nextDue: db.prepare('SELECT MIN(due_at) FROM callbacks WHERE due_at IS NOT NULL').pluck(),
      due: db
        .prepare(
          'SELECT id FROM callbacks WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?',
        )
        .pluck(),
      earlyAll: db.prepare(
        'SELECT seq, dedup_key, anchor, corr_key, status, data, held_at, expires_at FROM early_events ORDER BY seq',
      ),
    };
    const { upsert, insert, update, updateBody, del } = this.#s;
    // A redelivered event is held once (its identity is unique).
    const earlyAdd = db.prepare(
      `INSERT INTO early_events (seq, dedup_key, anchor, corr_key, status, data, held_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING`,
    );
    const earlyDel = db.prepare('DELETE FROM early_events WHERE dedup_key = ?');
    this.#write = db.transaction((batch: StoreBatch) => {
      for (const r of batch.upserts) {
        const c = r.change;
        if (c === 'body' || c === 'index') {
          const done =
            c === 'body'
              ? updateBody.run(r.body, r.id)
              : update.run(r.status, r.dueAt, r.body, r.id);
          // The engine's view of the file is wrong: fail the batch rather than lose the write.
          if (done.changes !== 1) throw new Error(`callback ${r.id} has no row to update`);
          continue;
        }
        (c === 'insert' ? insert : upsert).run(
          r.id,
          r.seq,
          r.anchor,
          r.status,
          r.dueAt,
          r.idempotencyKey,
          r.correlationKey,
          r.parentId,
          r.body,
        );
      }
      for (const id of batch.deletes) del.run(id);
      // Adds first: an event held and claimed within one batch leaves no row.
      for (const e of batch.earlyAdds ?? [])
        earlyAdd.run(
          e.seq,
          e.dedupKey,
          e.anchor,
          e.correlationKey,
          e.status,
          e.data,
          e.heldAt,
          e.expiresAt,
        );
      for (const key of batch.earlyDone ?? []) earlyDel.run(key);
    });
  }

  #read<T>(fn: () => T): T {
    if (!this.#db) throw new StoreUnavailableError(`${this.name} is not open`);
    try {
      return fn();
    } catch (err) {
      throw new StoreUnavailableError(`reading ${this.name} failed: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  load(id: string): StoredCallback | undefined {
    const r = this.#read(() => this.#s.load.get(id) as Row | undefined);
    return r && toStored(r);
  }

  findByIdempotencyKey(key: string): StoredCallback | undefined {
    const r = this.#read(() => this.#s.byIdem.get(key) as Row | undefined);
    return r && toStored(r);
  }

  findByCorrelationKey(key: string): StoredCallback | undefined {
    const r = this.#read(() => this.#s.byCorr.get(key) as Row | undefined);
    return r && toStored(r);
  }

  loadEarly(): EarlyEventRow[] {
    const rows = this.#read(() => this.#s.earlyAll.all() as EarlyRow[]);
    return rows.map((r) => toEarlyRow(r));
  }

  childrenOf(id: string): string[] {
    return this.#read(() => this.#s.children.all(id) as string[]);
  }

  nextDueAt(): number | undefined {
    const at = this.#read(() => this.#s.nextDue.get() as number | null);
    return at ?? undefined;
  }

  dueIds(now: number, limit: number): string[] {
    return this.#read(() => this.#s.due.all(now, limit) as string[]);
  }

  list(query: StoreListQuery): StoredCallback[] {
    const statuses = query.statuses ?? [];
    const key = `${query.anchor === undefined ? 0 : 1}:${statuses.length}`;
    let stmt = this.#listStatements.get(key);
    if (!stmt) {
      const where = ['seq > ?'];
      if (query.anchor !== undefined) where.push('anchor = ?');
      if (statuses.length > 0) where.push(`status IN (${statuses.map(() => '?').join(', ')})`);
      stmt = this.#read(() =>
        this.#db!.prepare(
          `SELECT ${ROW_COLUMNS} FROM callbacks WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ?`,
        ),
      );
      this.#listStatements.set(key, stmt);
    }
    const params: unknown[] = [query.afterSeq];
    if (query.anchor !== undefined) params.push(query.anchor);
    params.push(...statuses, query.limit);
    const s = stmt;
    return this.#read(() => (s.all(...params) as Row[]).map(toStored));
  }

  commit(batch: StoreBatch): void {
    if (!this.#db) throw new StoreUnavailableError(`${this.name} is not open`);
    let ino: number;
    try {
      ino = statSync(this.#path).ino;
    } catch (err) {
      throw new StoreUnavailableError(`${this.name} was removed`, { cause: err });
    }
    // Writes to an unlinked or replaced file would succeed and then vanish: refuse them.
    if (ino !== this.#ino) throw new StoreUnavailableError(`${this.name} was replaced`);
    try {
      this.#write(batch);
    } catch (err) {
      const code = sqliteCode(err);
      throw new StoreUnavailableError(
        `commit to ${this.name} failed${code ? ` (${code})` : ''}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  close(): void {
    const db = this.#db;
    this.#db = undefined;
    if (db?.open) db.close();
  }
}

/**
 * A durable store in one SQLite file (WAL mode, group commit, one engine per
 * file). Needs the package `better-sqlite3` 12.x, loaded only when the store opens.
 *
 * @param options - the file path and durability setting.
 * @returns the store, for `createCallbackEngine({ store })`.
 * @throws {@link InvalidArgumentError} for a bad option.
 * @example
 * ```ts
 * import { createCallbackEngine } from 'callback-engine';
 * import { sqliteStore } from 'callback-engine/sqlite';
 *
 * const engine = createCallbackEngine({
 *   node: 'orders-1',
 *   secrets: [process.env.CALLBACK_SECRET!],
 *   store: sqliteStore({ path: './callbacks.db' }),
 * });
 * await engine.ready(); // recovery done: every pending callback is back
 * ```
 */
export function sqliteStore(options: SqliteStoreOptions): DurableStore {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError('sqliteStore() needs an options object with a path');
  checkKnownKeys('sqliteStore options', options, SQLITE_OPTION_KEYS);
  if (typeof options.path !== 'string' || options.path.length === 0 || options.path === ':memory:')
    throw new InvalidArgumentError(
      `sqliteStore options.path must be a file path (got ${JSON.stringify(options.path)})`,
    );
  const sync = options.synchronous;
  if (sync !== undefined && sync !== 'full' && sync !== 'normal')
    throw new InvalidArgumentError(
      `sqliteStore options.synchronous must be "full" or "normal" (got ${JSON.stringify(sync)})`,
    );
  if (options.maxBytes !== undefined && options.maxBytes < 65536)
    throw new InvalidArgumentError(
      `sqliteStore options.maxBytes must be at least 65536 (64 KiB: the schema alone needs several pages) (got ${String(options.maxBytes)})`,
    );
  for (const key of ['busyTimeoutMs', 'maxBytes'] as const) {
    const v = options[key];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0))
      throw new InvalidArgumentError(
        `sqliteStore options.${key} must be a non-negative integer (got ${String(v)})`,
      );
  }
  return new SqliteStore(options);
}
