/**
 * Opening a store's SQLite file from a test (to read rows, or to damage it), on the library the
 * store itself picks by default: `node:sqlite` where this Node has it, else `better-sqlite3`. So
 * the same tests run on Node 20 and on Node 22/24, where a better-sqlite3 built for another Node
 * would not load.
 */
import { createRequire } from 'node:module';

/** A prepared statement: what both libraries have. */
export interface TestStatement {
  run(...params: unknown[]): { changes: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/** An open SQLite file. */
export interface TestDb {
  /** `node:sqlite` or `better-sqlite3`. */
  readonly driver: string;
  prepare(sql: string): TestStatement;
  exec(sql: string): void;
  /** The first column of `PRAGMA <name>` (e.g. `integrity_check`, `user_version`). */
  pragma(name: string): unknown;
  close(): void;
}

interface RawDb {
  prepare(sql: string): TestStatement;
  exec(sql: string): void;
  close(): void;
}

const require = createRequire(import.meta.url);

/** `node:sqlite`'s DatabaseSync, if this Node has it (without its experimental warning). */
function nodeSqlite(): (new (path: string, options?: { readOnly?: boolean }) => RawDb) | undefined {
  const builtin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  if (builtin === undefined) return undefined;
  const warnings = process as unknown as { emitWarning: (...a: unknown[]) => void };
  const original = warnings.emitWarning;
  warnings.emitWarning = (w: unknown, ...rest: unknown[]) => {
    if (/SQLite is an experimental feature/i.test(w instanceof Error ? w.message : String(w)))
      return;
    original.call(process, w, ...rest);
  };
  try {
    const mod = builtin('node:sqlite') as
      { DatabaseSync: new (path: string, options?: { readOnly?: boolean }) => RawDb } | undefined;
    return mod?.DatabaseSync;
  } catch {
    return undefined;
  } finally {
    warnings.emitWarning = original;
  }
}

/** Which library {@link openDb} uses on this Node (the one `sqliteStore()` picks by default). */
export const TEST_SQLITE_DRIVER: 'node:sqlite' | 'better-sqlite3' =
  nodeSqlite() !== undefined ? 'node:sqlite' : 'better-sqlite3';

/** Opens the SQLite file at `path` (read-only with `readOnly`: the file must exist). */
export function openDb(path: string, options: { readOnly?: boolean } = {}): TestDb {
  const readOnly = options.readOnly === true;
  let db: RawDb;
  const DatabaseSync = nodeSqlite();
  if (DatabaseSync !== undefined) {
    db = new DatabaseSync(path, readOnly ? { readOnly: true } : {});
  } else {
    const Database = require('better-sqlite3') as new (
      path: string,
      options?: { readonly?: boolean; fileMustExist?: boolean },
    ) => RawDb;
    db = new Database(path, readOnly ? { readonly: true, fileMustExist: true } : {});
  }
  return {
    driver: TEST_SQLITE_DRIVER,
    prepare: (sql) => db.prepare(sql),
    exec: (sql) => db.exec(sql),
    pragma: (name) => {
      const row = db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown> | undefined;
      return row === undefined ? undefined : Object.values(row)[0];
    },
    close: () => db.close(),
  };
}
