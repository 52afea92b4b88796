/**
 * The SQLite store: one file per engine, WAL, one transaction per group
 * commit. A callback's row is small (its indexed columns, its fixed part); a
 * report appends one journal entry, and updates the row only when its status,
 * due time or owed flag changes (the row's `head` column is the head at that
 * update; reads take the newest of it, the snapshot's and the journal's seq),
 * so the bytes written per report do not grow with the callback's data.
 * Its state is rewritten as a snapshot only once the entries after the last
 * snapshot outweigh it.
 *
 * One engine per file: the engine holds an exclusive lock on a companion file
 * (`<path>.lock`) for as long as it runs (the operating system drops it when
 * the process dies), while the database itself stays readable by other
 * processes (the command line reads a running service's file).
 *
 * @module
 */

import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { StoreIncompatibleError, StoreLockedError, StoreUnavailableError } from '../../errors.js';
import type { CallbackStatus } from '../../lifecycle/statuses.js';
import { toEarlyRow, type EarlyRow } from '../row.js';
import type {
  DurableStore,
  EarlyEventRow,
  StoreBatch,
  StoredCallback,
  StoreCountQuery,
  StoreListQuery,
  StoreOpenContext,
  StoreRecovery,
} from '../store.js';
import {
  openConnection,
  pickDriver,
  sqliteCode,
  type SqlConnection,
  type SqliteDriver,
  type SqliteDriverOption,
  type SqlStatement,
} from './driver.js';
import { BACKSTOP_PAGES, Checkpointer } from './checkpointer.js';
import { migrate } from './schema.js';

/** The columns of a callback's row, its snapshot and its journal tail, as one select list. */
export const CALLBACK_SELECT = `SELECT c.id, c.seq, c.anchor, c.status, c.due_at, c.idem_key, c.corr_key,
  c.parent_id, max(c.head, coalesce(s.seq, 0), coalesce((SELECT max(j.seq) FROM journal j
    WHERE j.callback_id = c.id), 0)) AS head, c.meta, s.body AS snap,
  (SELECT json_group_array(j.entry ORDER BY j.seq) FROM journal j
    WHERE j.callback_id = c.id AND j.seq > coalesce(s.seq, 0)) AS tail
  FROM callbacks c LEFT JOIN snapshots s ON s.id = c.id`;

/**
 * The count of the rows a listing with these filters holds: by anchor and status on their index,
 * by tags in the row's fixed part (JSON, read with SQLite's JSON functions).
 */
export function countSql(query: StoreCountQuery): { text: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (query.anchor !== undefined) {
    where.push('anchor = ?');
    params.push(query.anchor);
  }
  const statuses = query.statuses ?? [];
  if (statuses.length > 0) {
    where.push(`status IN (${statuses.map(() => '?').join(', ')})`);
    params.push(...statuses);
  }
  for (const tag of query.tags) {
    where.push("EXISTS (SELECT 1 FROM json_each(meta, '$.tags') t WHERE t.value = ?)");
    params.push(tag);
  }
  return {
    text: `SELECT count(*) AS n FROM callbacks${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`,
    params,
  };
}

/** One row of {@link CALLBACK_SELECT}. */
export interface CallbackSelectRow {
  id: string;
  seq: number;
  anchor: string;
  status: string;
  due_at: number | null;
  idem_key: string | null;
  corr_key: string | null;
  parent_id: string | null;
  head: number;
  meta: string;
  snap: string | null;
  tail: string | null;
}

/** A row of {@link CALLBACK_SELECT} as the store contract's {@link StoredCallback}. */
export function toStoredCallback(r: CallbackSelectRow): StoredCallback {
  return {
    id: r.id,
    seq: r.seq,
    anchor: r.anchor,
    status: r.status as CallbackStatus,
    dueAt: r.due_at,
    idempotencyKey: r.idem_key,
    correlationKey: r.corr_key,
    parentId: r.parent_id,
    head: r.head,
    meta: r.meta,
    snapshot: r.snap,
    tail: r.tail === null || r.tail === '[]' ? [] : (JSON.parse(r.tail) as string[]),
  };
}

/** SQLite's page cache per engine, in KiB (its default is 2 MiB). */
export const CACHE_KIB = 64 * 1024;

/** Options of the SQLite store (see `sqliteStore()`). */
export interface SqliteStoreSettings {
  readonly path: string;
  readonly synchronous: 'full' | 'normal';
  readonly busyTimeoutMs: number;
  readonly maxBytes: number | undefined;
  readonly driver: SqliteDriverOption;
}

interface Statements {
  insert: SqlStatement;
  update: SqlStatement;
  append: SqlStatement;
  snapshot: SqlStatement;
  key: SqlStatement;
  delRow: SqlStatement;
  delSnap: SqlStatement;
  delJournal: SqlStatement;
  delKeys: SqlStatement;
  load: SqlStatement;
  byIdem: SqlStatement;
  byCorr: SqlStatement;
  children: SqlStatement;
  hasKey: SqlStatement;
  nextDue: SqlStatement;
  due: SqlStatement;
  owed: SqlStatement;
  history: SqlStatement;
  prune: SqlStatement;
  earlyAll: SqlStatement;
  earlyAdd: SqlStatement;
  earlyDel: SqlStatement;
}

/** The SQLite store; see `sqliteStore()`. */
export class SqliteStore implements DurableStore {
  readonly kind = 'durable' as const;
  readonly name: string;
  readonly #settings: SqliteStoreSettings;
  readonly #path: string;
  #db: SqlConnection | undefined;
  #lock: SqlConnection | undefined;
  /** Checkpoints the write-ahead log on its own thread while open. */
  #checkpointer: Checkpointer | undefined;
  #ino = 0;
  #s!: Statements;
  readonly #listStatements = new Map<string, SqlStatement>();
  /** The driver it runs on, once open. */
  driver: SqliteDriver | undefined;

  constructor(settings: SqliteStoreSettings) {
    this.#settings = settings;
    this.#path = resolve(settings.path);
    this.name = `sqlite:${this.#path}`;
  }

  async open(context: StoreOpenContext): Promise<StoreRecovery> {
    const driver = await pickDriver(this.#settings.driver);
    this.driver = driver;
    this.#lock = await this.#takeLock(driver);
    let db: SqlConnection;
    try {
      db = await openConnection(driver, this.#path);
    } catch (err) {
      this.#releaseLock();
      throw err;
    }
    try {
      db.exec(`PRAGMA busy_timeout = ${this.#settings.busyTimeoutMs}`);
      db.exec('PRAGMA journal_mode = WAL');
      migrate(db, this.name, context.machineVersion);
      db.exec(`PRAGMA synchronous = ${this.#settings.synchronous.toUpperCase()}`);
      // Pages kept in memory (negative: KiB): the rows, journal and snapshot pages reports touch.
      db.exec(`PRAGMA cache_size = -${CACHE_KIB}`);
      // Checkpoints run on their own thread; this one copies back only if that one falls behind.
      db.exec(`PRAGMA wal_autocheckpoint = ${BACKSTOP_PAGES}`);
      if (this.#settings.maxBytes !== undefined) {
        const pageSize = Number(db.pragma('page_size'));
        db.exec(
          `PRAGMA max_page_count = ${Math.max(1, Math.floor(this.#settings.maxBytes / pageSize))}`,
        );
      }
      this.#prepare(db);
    } catch (err) {
      db.close();
      this.#releaseLock();
      if (err instanceof StoreIncompatibleError || err instanceof StoreUnavailableError) throw err;
      throw new StoreUnavailableError(`cannot open ${this.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.#db = db;
    this.#ino = statSync(this.#path).ino;
    this.#checkpointer = new Checkpointer(this.#path, driver);
    const counts = (
      db
        .prepare('SELECT anchor, status, COUNT(*) AS count FROM callbacks GROUP BY anchor, status')
        .all() as { anchor: string; status: CallbackStatus; count: number }[]
    ).map((r) => ({ anchor: r.anchor, status: r.status, count: r.count }));
    const maxSeq = (db.prepare('SELECT MAX(seq) AS m FROM callbacks').get() as { m: number | null })
      .m;
    const owed = (this.#s.owed.all() as { id: string }[]).map((r) => r.id);
    return { counts, maxSeq: maxSeq ?? -1, owed };
  }

  /**
   * Takes the file's lock: an exclusive write lock on `<path>.lock`, held until close (or the
   * process's death). A second engine on the same file is refused at once.
   */
  async #takeLock(driver: SqliteDriver): Promise<SqlConnection> {
    const lock = await openConnection(driver, `${this.#path}.lock`);
    try {
      lock.exec('PRAGMA locking_mode = EXCLUSIVE');
      lock.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER)');
      lock.exec('BEGIN EXCLUSIVE');
      lock.exec('DELETE FROM holder');
      lock.prepare('INSERT INTO holder (pid) VALUES (?)').run(process.pid);
      lock.exec('COMMIT');
      return lock;
    } catch (err) {
      lock.close();
      const code = sqliteCode(err);
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
        throw new StoreLockedError(
          `${this.name} is in use by another engine (one engine per SQLite file)`,
          { cause: err },
        );
      throw new StoreUnavailableError(`cannot lock ${this.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  #releaseLock(): void {
    const lock = this.#lock;
    this.#lock = undefined;
    if (lock?.isOpen) lock.close();
  }

  #prepare(db: SqlConnection): void {
    this.#s = {
      insert: db.prepare(
        `INSERT INTO callbacks (id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, head, owed, meta)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      update: db.prepare(
        'UPDATE callbacks SET status = ?, due_at = ?, head = ?, owed = ? WHERE id = ?',
      ),
      append: db.prepare('INSERT INTO journal (callback_id, seq, at, entry) VALUES (?, ?, ?, ?)'),
      snapshot: db.prepare(
        `INSERT INTO snapshots (id, seq, body) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, body = excluded.body`,
      ),
      key: db.prepare(
        'INSERT INTO dedup (callback_id, key, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      ),
      delRow: db.prepare('DELETE FROM callbacks WHERE id = ?'),
      delSnap: db.prepare('DELETE FROM snapshots WHERE id = ?'),
      delJournal: db.prepare('DELETE FROM journal WHERE callback_id = ?'),
      delKeys: db.prepare('DELETE FROM dedup WHERE callback_id = ?'),
      load: db.prepare(`${CALLBACK_SELECT} WHERE c.id = ?`),
      byIdem: db.prepare(`${CALLBACK_SELECT} WHERE c.idem_key = ?`),
      byCorr: db.prepare(`${CALLBACK_SELECT} WHERE c.corr_key = ? ORDER BY c.seq DESC LIMIT 1`),
      children: db.prepare('SELECT id FROM callbacks WHERE parent_id = ? ORDER BY seq'),
      hasKey: db.prepare('SELECT 1 AS k FROM dedup WHERE callback_id = ? AND key = ?'),
      nextDue: db.prepare('SELECT MIN(due_at) AS m FROM callbacks WHERE due_at IS NOT NULL'),
      due: db.prepare(
        'SELECT id FROM callbacks WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?',
      ),
      owed: db.prepare('SELECT id FROM callbacks WHERE owed IS NOT NULL ORDER BY seq'),
      history: db.prepare(
        'SELECT entry FROM journal WHERE callback_id = ? AND seq > ? ORDER BY seq LIMIT ?',
      ),
      prune: db.prepare(
        `DELETE FROM dedup WHERE (callback_id, key) IN
           (SELECT callback_id, key FROM dedup WHERE at < ? ORDER BY at LIMIT ?)`,
      ),
      earlyAll: db.prepare(
        'SELECT seq, dedup_key, anchor, corr_key, status, data, held_at, expires_at FROM early_events ORDER BY seq',
      ),
      // A redelivered event is held once (its identity is unique).
      earlyAdd: db.prepare(
        `INSERT INTO early_events (seq, dedup_key, anchor, corr_key, status, data, held_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING`,
      ),
      earlyDel: db.prepare('DELETE FROM early_events WHERE dedup_key = ?'),
    };
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

  #one(stmt: SqlStatement, ...params: unknown[]): StoredCallback | undefined {
    const r = this.#read(() => stmt.get(...params) as CallbackSelectRow | undefined);
    return r && toStoredCallback(r);
  }

  load(id: string): StoredCallback | undefined {
    return this.#one(this.#s.load, id);
  }

  findByIdempotencyKey(key: string): StoredCallback | undefined {
    return this.#one(this.#s.byIdem, key);
  }

  findByCorrelationKey(key: string): StoredCallback | undefined {
    return this.#one(this.#s.byCorr, key);
  }

  loadEarly(): EarlyEventRow[] {
    const rows = this.#read(() => this.#s.earlyAll.all() as EarlyRow[]);
    return rows.map((r) => toEarlyRow(r));
  }

  childrenOf(id: string): string[] {
    return this.#read(() => (this.#s.children.all(id) as { id: string }[]).map((r) => r.id));
  }

  hasKey(id: string, key: string): boolean {
    return this.#read(() => this.#s.hasKey.get(id, key) !== undefined);
  }

  nextDueAt(): number | undefined {
    const row = this.#read(() => this.#s.nextDue.get() as { m: number | null } | undefined);
    return row?.m ?? undefined;
  }

  dueIds(now: number, limit: number): string[] {
    return this.#read(() => (this.#s.due.all(now, limit) as { id: string }[]).map((r) => r.id));
  }

  history(id: string, afterSeq: number, limit: number): string[] {
    return this.#read(() =>
      (this.#s.history.all(id, afterSeq, limit) as { entry: string }[]).map((r) => r.entry),
    );
  }

  pruneKeys(before: number, limit: number): number {
    this.#assertFile();
    try {
      return Number(this.#s.prune.run(before, limit).changes);
    } catch (err) {
      throw new StoreUnavailableError(
        `pruning deduplication keys in ${this.name} failed: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  list(query: StoreListQuery): StoredCallback[] {
    const statuses = query.statuses ?? [];
    const newest = query.beforeSeq !== undefined;
    const key = `${newest ? 'd' : 'a'}:${query.anchor === undefined ? 0 : 1}:${statuses.length}`;
    let stmt = this.#listStatements.get(key);
    if (!stmt) {
      const where = [newest ? 'c.seq < ?' : 'c.seq > ?'];
      if (query.anchor !== undefined) where.push('c.anchor = ?');
      if (statuses.length > 0) where.push(`c.status IN (${statuses.map(() => '?').join(', ')})`);
      stmt = this.#read(() =>
        this.#db!.prepare(
          `${CALLBACK_SELECT} WHERE ${where.join(' AND ')} ORDER BY c.seq${newest ? ' DESC' : ''} LIMIT ?`,
        ),
      );
      this.#listStatements.set(key, stmt);
    }
    const params: unknown[] = [newest ? query.beforeSeq : query.afterSeq];
    if (query.anchor !== undefined) params.push(query.anchor);
    params.push(...statuses, query.limit);
    const s = stmt;
    return this.#read(() => (s.all(...params) as CallbackSelectRow[]).map(toStoredCallback));
  }

  count(query: StoreCountQuery): number {
    const { text, params } = countSql(query);
    return this.#read(() => Number((this.#db!.prepare(text).get(...params) as { n: number }).n));
  }

  /** Writes to an unlinked or replaced file would succeed and then vanish: refuse them. */
  #assertFile(): void {
    if (!this.#db) throw new StoreUnavailableError(`${this.name} is not open`);
    let ino: number;
    try {
      ino = statSync(this.#path).ino;
    } catch (err) {
      throw new StoreUnavailableError(`${this.name} was removed`, { cause: err });
    }
    if (ino !== this.#ino) throw new StoreUnavailableError(`${this.name} was replaced`);
  }

  commit(batch: StoreBatch): void {
    this.#assertFile();
    const db = this.#db!;
    const s = this.#s;
    try {
      db.exec('BEGIN IMMEDIATE');
      try {
        for (const r of batch.rows) {
          if (r.change === 'insert') {
            s.insert.run(
              r.id,
              r.seq,
              r.anchor,
              r.status,
              r.dueAt,
              r.idempotencyKey,
              r.correlationKey,
              r.parentId,
              r.head,
              r.owed ? 1 : null,
              r.meta,
            );
          } else if (r.headOnly === true) {
            // Status, due time and owed as the row holds them: the head is read from the journal.
            continue;
          } else if (
            Number(s.update.run(r.status, r.dueAt, r.head, r.owed ? 1 : null, r.id).changes) !== 1
          ) {
            // The engine's view of the file is wrong: fail the batch rather than lose the write.
            throw new Error(`callback ${r.id} has no row to update`);
          }
        }
        for (const e of batch.entries) s.append.run(e.id, e.seq, e.at, e.entry);
        for (const snap of batch.snapshots) s.snapshot.run(snap.id, snap.seq, snap.body);
        for (const k of batch.dedup) s.key.run(k.id, k.key, k.at);
        for (const id of batch.deletes) {
          s.delRow.run(id);
          s.delSnap.run(id);
          s.delJournal.run(id);
          s.delKeys.run(id);
        }
        // Adds first: an event held and claimed within one batch leaves no row.
        for (const e of batch.earlyAdds ?? [])
          s.earlyAdd.run(
            e.seq,
            e.dedupKey,
            e.anchor,
            e.correlationKey,
            e.status,
            e.data,
            e.heldAt,
            e.expiresAt,
          );
        for (const key of batch.earlyDone ?? []) s.earlyDel.run(key);
        db.exec('COMMIT');
        this.#checkpointer?.committed();
      } catch (err) {
        try {
          db.exec('ROLLBACK');
        } catch {
          // SQLite may have rolled back by itself (a full disk, an I/O error)
        }
        throw err;
      }
    } catch (err) {
      const code = sqliteCode(err);
      throw new StoreUnavailableError(
        `commit to ${this.name} failed${code ? ` (${code})` : ''}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  close(): void | Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    const checkpointer = this.#checkpointer;
    this.#checkpointer = undefined;
    const finish = () => {
      // The last connection to close checkpoints what is left and removes the log.
      if (db?.isOpen) db.close();
      this.#releaseLock();
    };
    if (!checkpointer) return finish();
    return checkpointer.stop().then(finish, finish);
  }
}
