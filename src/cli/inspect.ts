/**
 * `callback-engine ls|get|stats <db>`: look into a SQLite store file offline,
 * read-only, without starting an engine. Rows are decoded by the same codec
 * the engine uses, so what is printed is what the engine would restore.
 *
 * @module
 */

import { createRequire } from 'node:module';
import { existsSync, statSync } from 'node:fs';
import type BetterSqlite3 from 'better-sqlite3';
import type { HistoryEntry } from '../history.js';
import { decodeRecord } from '../registry/record-codec.js';
import type { CallbackRecord } from '../registry/record.js';
import { ROW_COLUMNS as columns, toStored, type Row } from '../store/row.js';
import { SQLITE_SCHEMA_VERSION } from '../store/sqlite.js';

/** A callback as the CLI prints it (never its full token). */
export interface InspectedCallback {
  readonly id: string;
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
  /** The first 12 characters of the token, to recognise it; the rest is never shown. */
  readonly tokenPrefix: string;
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
  /**
   * A callback's history (its journal as users read it), oldest first; `undefined` when the file
   * keeps none for it. Absent on stores that keep no history: `get` then prints the record only.
   */
  history?(id: string): readonly HistoryEntry[] | undefined;
  stats(): InspectedStats;
  close(): void;
}

/** Why a store file cannot be inspected (printed as the CLI's error). */
export class InspectError extends Error {}

const iso = (ms: number | undefined): string | null =>
  ms === undefined ? null : new Date(ms).toISOString();

function view(row: Row): InspectedCallback {
  const { record } = decodeRecord(toStored(row));
  return shown(record);
}

function shown(r: CallbackRecord): InspectedCallback {
  return {
    id: r.id,
    anchor: r.anchor,
    status: r.status,
    seq: r.seq,
    createdAt: iso(r.createdAt)!,
    deadlineAt: iso(r.deadlineAt),
    heartbeatMs: r.heartbeatMs ?? null,
    removeAt: iso(r.removeAt),
    tags: r.tags,
    parentId: r.parentId ?? null,
    tokenPrefix: `${r.token.slice(0, 12)}…`,
    data: r.data.value,
    stepError: r.stepError ?? null,
  };
}

/**
 * Opens a SQLite store file read-only.
 * @throws {@link InspectError} if it is missing, not a callback-engine store, of a newer
 *   schema, or locked by a running engine.
 */
export function inspectSqlite(path: string): StoreInspector {
  if (!existsSync(path)) throw new InspectError(`no such file: ${path}`);
  const require = createRequire(import.meta.url);
  let Database: typeof BetterSqlite3;
  try {
    Database = require('better-sqlite3') as typeof BetterSqlite3;
  } catch {
    throw new InspectError('better-sqlite3 is not installed: npm install better-sqlite3@12');
  }
  let db: BetterSqlite3.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 100 });
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SQLITE_SCHEMA_VERSION)
      throw new InspectError(
        `${path} has store schema ${version}; this callback-engine reads up to ${SQLITE_SCHEMA_VERSION}`,
      );
    const table = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'callbacks'")
      .get();
    if (table === undefined) throw new InspectError(`${path} is not a callback-engine store`);
  } catch (err) {
    if (err instanceof InspectError) throw err;
    const code = (err as { code?: string }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
      throw new InspectError(
        `${path} is locked by a running engine (one engine per file, exclusive lock); read it through that engine's HTTP service or dashboard`,
      );
    if (code === 'SQLITE_NOTADB') throw new InspectError(`${path} is not a SQLite database`);
    throw new InspectError(`cannot read ${path}: ${(err as Error).message}`);
  }
  const run = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
        throw new InspectError(`${path} is locked by a running engine`);
      throw err;
    }
  };
  return {
    list({ status, anchor, cursor, limit }) {
      const where: string[] = ['seq > ?'];
      const args: unknown[] = [cursor === undefined ? -1 : Number(cursor)];
      if (cursor !== undefined && !/^\d+$/.test(cursor))
        throw new InspectError(`--cursor must be the cursor a previous page printed`);
      if (status !== undefined) {
        where.push('status = ?');
        args.push(status);
      }
      if (anchor !== undefined) {
        where.push('anchor = ?');
        args.push(anchor);
      }
      const rows = run(
        () =>
          db
            .prepare(
              `SELECT ${columns} FROM callbacks WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ?`,
            )
            .all(...args, limit + 1) as Row[],
      );
      const items = rows.slice(0, limit).map(view);
      return {
        items,
        cursor: rows.length > limit ? String(items[items.length - 1]!.seq) : undefined,
      };
    },
    get(id) {
      const row = run(
        () =>
          db.prepare(`SELECT ${columns} FROM callbacks WHERE id = ?`).get(id) as Row | undefined,
      );
      if (row === undefined) return undefined;
      const children = run(
        () =>
          db
            .prepare('SELECT id FROM callbacks WHERE parent_id = ? ORDER BY seq')
            .pluck()
            .all(id) as string[],
      );
      return { ...view(row), children };
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
          db.prepare('SELECT min(due_at) FROM callbacks WHERE due_at IS NOT NULL').pluck().get() as
            number | null,
      );
      return {
        file: path,
        bytes: statSync(path).size + (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0),
        schemaVersion: db.pragma('user_version', { simple: true }) as number,
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
