/**
 * `callback-engine ls|get|stats <db>`: look into a SQLite store file read-only,
 * without starting an engine, also beside the engine that runs on it (SQLite's
 * WAL lets readers read while its one writer writes; the engine's lock is a
 * companion file). Rows are decoded by the same codec the engine uses, so what
 * is printed is what the engine would restore.
 *
 * @module
 */

import { existsSync, statSync } from 'node:fs';
import type { HistoryEntry } from '../history.js';
import { decodeEntry, toHistory } from '../journal/journal.js';
import { decodeRecord } from '../registry/record-codec.js';
import type { CallbackRecord } from '../registry/record.js';
import {
  openConnection,
  pickDriver,
  sqliteCode,
  type SqlConnection,
} from '../store/sqlite/driver.js';
import { SQLITE_SCHEMA_VERSION } from '../store/sqlite/schema.js';
import {
  CALLBACK_SELECT,
  toStoredCallback,
  type CallbackSelectRow,
} from '../store/sqlite/store.js';

/** A callback as the CLI prints it (never its full token). */
export interface InspectedCallback {
  readonly id: string;
  /**
   * The shortest start of its id (at least {@link MIN_SHORT_ID} characters) that no other
   * callback in the file shares: what `ls` shows, and what `get` takes.
   */
  readonly shortId: string;
  readonly anchor: string;
  readonly status: string;
  readonly seq: number;
  readonly createdAt: string;
  readonly deadlineAt: string | null;
  /** Its heartbeat window in ms, if it has one. */
  readonly heartbeatMs: number | null;
  readonly removeAt: string | null;
  readonly tags: readonly string[];
  readonly parentId: string | null;
  /** The last 10 characters of the token (part of its signature), to tell it apart; the rest is never shown. */
  readonly tokenHint: string;
  readonly data: unknown;
  readonly stepError: { status: string; message: string } | null;
}

/** What `stats` prints. */
export interface InspectedStats {
  readonly file: string;
  readonly bytes: number;
  readonly schemaVersion: number;
  readonly callbacks: number;
  readonly byStatus: Readonly<Record<string, number>>;
  readonly byAnchor: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** The next instant the engine must act on (deadline, heartbeat, removal), if any. */
  readonly nextDueAt: string | null;
}

/** A read-only view of a store file. */
export interface StoreInspector {
  list(query: { status?: string; anchor?: string; cursor?: string; limit: number }): {
    items: InspectedCallback[];
    cursor: string | undefined;
  };
  get(id: string): (InspectedCallback & { children: string[] }) | undefined;
  /** Ids that start with `prefix`, at most `limit` of them, in id order (to resolve a short id). */
  startingWith?(prefix: string, limit: number): string[];
  /**
   * A callback's history (its journal as users read it), oldest first, at most `limit` entries
   * after `afterSeq`. Absent on stores that keep no history: `get` then prints the record only.
   */
  history?(id: string, afterSeq?: number, limit?: number): readonly HistoryEntry[] | undefined;
  stats(): InspectedStats;
  close(): void;
}

/** Why a store file cannot be inspected (printed as the CLI's error). */
export class InspectError extends Error {}

const iso = (ms: number | undefined): string | null =>
  ms === undefined ? null : new Date(ms).toISOString();

/** The fewest characters of an id `ls` shows. */
export const MIN_SHORT_ID = 8;

/** Length of the common start of two strings. */
function common(a: string, b: string | undefined): number {
  if (b === undefined) return 0;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i;
}

function shown(r: CallbackRecord, shortId: string): InspectedCallback {
  return {
    id: r.id,
    shortId,
    anchor: r.anchor,
    status: r.status,
    seq: r.seq,
    createdAt: iso(r.createdAt)!,
    deadlineAt: iso(r.deadlineAt),
    heartbeatMs: r.heartbeatMs ?? null,
    removeAt: iso(r.removeAt),
    tags: r.tags,
    parentId: r.parentId ?? null,
    tokenHint: `…${r.token.slice(-10)}`,
    data: r.data.value,
    stepError: r.stepError ?? null,
  };
}

/**
 * Opens a SQLite store file read-only, beside the engine that may be running on it (readers do
 * not block its writes; WAL).
 * @throws {@link InspectError} if it is missing, not a callback-engine store, or of a newer schema.
 */
export async function inspectSqlite(path: string): Promise<StoreInspector> {
  if (!existsSync(path)) throw new InspectError(`no such file: ${path}`);
  let db: SqlConnection;
  try {
    db = await openConnection(await pickDriver('auto'), path, { readOnly: true });
  } catch (err) {
    throw new InspectError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    db.exec('PRAGMA busy_timeout = 2000');
    const version = Number(db.pragma('user_version'));
    if (version > SQLITE_SCHEMA_VERSION)
      throw new InspectError(
        `${path} has store schema ${version}; this callback-engine reads up to ${SQLITE_SCHEMA_VERSION}`,
      );
    if (version < SQLITE_SCHEMA_VERSION && version > 0)
      throw new InspectError(
        `${path} has store schema ${version}: open it once with an engine of this version to upgrade it`,
      );
    const table = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'callbacks'")
      .get();
    if (table === undefined) throw new InspectError(`${path} is not a callback-engine store`);
  } catch (err) {
    db.close();
    if (err instanceof InspectError) throw err;
    const code = sqliteCode(err);
    if (code === 'SQLITE_NOTADB') throw new InspectError(`${path} is not a SQLite database`);
    throw new InspectError(`cannot read ${path}: ${(err as Error).message}`);
  }
  /** The shortest start of `id` no other id shares: one past its common start with its neighbours. */
  const before = db.prepare('SELECT id FROM callbacks WHERE id < ? ORDER BY id DESC LIMIT 1');
  const after = db.prepare('SELECT id FROM callbacks WHERE id > ? ORDER BY id LIMIT 1');
  const shortIdOf = (id: string): string => {
    const near = (stmt: typeof before) => (stmt.get(id) as { id: string } | undefined)?.id;
    const n = Math.max(common(id, near(before)), common(id, near(after))) + 1;
    return id.slice(0, Math.max(MIN_SHORT_ID, n));
  };
  const view = (row: CallbackSelectRow): InspectedCallback =>
    shown(decodeRecord(toStoredCallback(row)).record, shortIdOf(row.id));
  const run = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      const code = sqliteCode(err);
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
        throw new InspectError(`${path} is busy (a checkpoint of the running engine); try again`);
      throw err;
    }
  };
  return {
    list({ status, anchor, cursor, limit }) {
      const where: string[] = ['c.seq > ?'];
      const args: unknown[] = [cursor === undefined ? -1 : Number(cursor)];
      if (cursor !== undefined && !/^\d+$/.test(cursor))
        throw new InspectError(`--cursor must be the cursor a previous page printed`);
      if (status !== undefined) {
        where.push('c.status = ?');
        args.push(status);
      }
      if (anchor !== undefined) {
        where.push('c.anchor = ?');
        args.push(anchor);
      }
      const rows = run(
        () =>
          db
            .prepare(`${CALLBACK_SELECT} WHERE ${where.join(' AND ')} ORDER BY c.seq LIMIT ?`)
            .all(...args, limit + 1) as CallbackSelectRow[],
      );
      const items = run(() => rows.slice(0, limit).map(view));
      return {
        items,
        cursor: rows.length > limit ? String(items[items.length - 1]!.seq) : undefined,
      };
    },
    get(id) {
      const row = run(
        () =>
          db.prepare(`${CALLBACK_SELECT} WHERE c.id = ?`).get(id) as CallbackSelectRow | undefined,
      );
      if (row === undefined) return undefined;
      const children = run(() =>
        (
          db.prepare('SELECT id FROM callbacks WHERE parent_id = ? ORDER BY seq').all(id) as {
            id: string;
          }[]
        ).map((r) => r.id),
      );
      return { ...run(() => view(row)), children };
    },
    startingWith(prefix, limit) {
      // Ids are base64url: every character sorts before '~'.
      return run(() =>
        (
          db
            .prepare('SELECT id FROM callbacks WHERE id >= ? AND id < ? ORDER BY id LIMIT ?')
            .all(prefix, `${prefix}~`, limit) as { id: string }[]
        ).map((r) => r.id),
      );
    },
    history(id, afterSeq = 0, limit = 10_000) {
      return run(() =>
        (
          db
            .prepare(
              'SELECT entry FROM journal WHERE callback_id = ? AND seq > ? ORDER BY seq LIMIT ?',
            )
            .all(id, afterSeq, limit) as { entry: string }[]
        ).map((r) => toHistory(decodeEntry(r.entry))),
      );
    },
    stats() {
      const counts = run(
        () =>
          db
            .prepare('SELECT anchor, status, count(*) AS n FROM callbacks GROUP BY anchor, status')
            .all() as { anchor: string; status: string; n: number }[],
      );
      const byStatus: Record<string, number> = {};
      const byAnchor: Record<string, Record<string, number>> = {};
      let total = 0;
      for (const { anchor, status, n } of counts) {
        total += n;
        byStatus[status] = (byStatus[status] ?? 0) + n;
        (byAnchor[anchor] ??= {})[status] = n;
      }
      const due = run(
        () =>
          (
            db.prepare('SELECT min(due_at) AS m FROM callbacks WHERE due_at IS NOT NULL').get() as {
              m: number | null;
            }
          ).m,
      );
      return {
        file: path,
        bytes: statSync(path).size + (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0),
        schemaVersion: Number(db.pragma('user_version')),
        callbacks: total,
        byStatus,
        byAnchor,
        nextDueAt: due === null ? null : new Date(due).toISOString(),
      };
    },
    close() {
      db.close();
    },
  };
}

/** Lays out rows as a plain text table with a header. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
