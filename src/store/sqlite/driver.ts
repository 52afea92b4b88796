/**
 * The SQLite connection the store runs on: `node:sqlite` (built into Node 22.13+ and 24, no
 * compiler, no install script) or `better-sqlite3` (a native addon, for Node 20). Both give
 * synchronous prepared statements with positional parameters; this file hides the few ways
 * they differ (errors, pragmas, the open flag), and nothing else of the store knows which runs.
 *
 * @module
 */

import { StoreUnavailableError } from '../../errors.js';

/** A prepared statement. */
export interface SqlStatement {
  run(...params: unknown[]): { changes: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/** An open connection. */
export interface SqlConnection {
  /** Which library it runs on. */
  readonly driver: SqliteDriver;
  prepare(sql: string): SqlStatement;
  exec(sql: string): void;
  /** The value of a pragma (`PRAGMA name`), e.g. `user_version`. */
  pragma(name: string): unknown;
  readonly isOpen: boolean;
  close(): void;
}

/** The SQLite library a store runs on. */
export type SqliteDriver = 'node:sqlite' | 'better-sqlite3';

/** The driver option: one of them, or `auto` (`node:sqlite` where Node has it, else better-sqlite3). */
export type SqliteDriverOption = SqliteDriver | 'auto';

interface NodeSqliteModule {
  DatabaseSync: new (
    path: string,
    options?: { readOnly?: boolean; timeout?: number },
  ) => {
    prepare(sql: string): SqlStatement;
    exec(sql: string): void;
    close(): void;
    readonly isOpen: boolean;
  };
}

interface BetterSqliteDatabase {
  prepare(sql: string): SqlStatement;
  exec(sql: string): void;
  close(): void;
  readonly open: boolean;
}

type BetterSqliteCtor = new (
  path: string,
  options?: { timeout?: number; readonly?: boolean; fileMustExist?: boolean },
) => BetterSqliteDatabase;

let nodeSqlite: Promise<NodeSqliteModule | undefined> | undefined;

/** `node:sqlite` by a name TypeScript does not resolve (Node 20's types do not have it). */
const NODE_SQLITE: string = 'node:sqlite';

/** `node:sqlite`, if this Node has it (loaded once, without its experimental warning). */
export function loadNodeSqlite(): Promise<NodeSqliteModule | undefined> {
  nodeSqlite ??= (async () => {
    // Node 22 prints an ExperimentalWarning when the module loads: hold that one warning back.
    const warnings = process as unknown as { emitWarning: (...a: unknown[]) => void };
    const original = warnings.emitWarning;
    warnings.emitWarning = (warning: unknown, ...rest: unknown[]) => {
      const text = warning instanceof Error ? warning.message : String(warning);
      if (/SQLite is an experimental feature/i.test(text)) return;
      original.call(process, warning, ...rest);
    };
    try {
      return (await import(NODE_SQLITE)) as NodeSqliteModule;
    } catch {
      return undefined;
    } finally {
      warnings.emitWarning = original;
    }
  })();
  return nodeSqlite;
}

/** Which driver `auto` picks here: `node:sqlite` where this Node has it. */
export async function pickDriver(option: SqliteDriverOption): Promise<SqliteDriver> {
  if (option !== 'auto') return option;
  return (await loadNodeSqlite()) ? 'node:sqlite' : 'better-sqlite3';
}

/**
 * Opens a connection to `path` (created if missing unless `readOnly`).
 * @throws {@link StoreUnavailableError} if the driver is missing or the file cannot be opened.
 */
export async function openConnection(
  driver: SqliteDriver,
  path: string,
  options: { readOnly?: boolean } = {},
): Promise<SqlConnection> {
  if (driver === 'node:sqlite') {
    const mod = await loadNodeSqlite();
    if (!mod)
      throw new StoreUnavailableError(
        `this Node (${process.version}) has no node:sqlite (Node 22.13 or later has it): use driver 'better-sqlite3' (npm install better-sqlite3@12)`,
      );
    let db: InstanceType<NodeSqliteModule['DatabaseSync']>;
    try {
      db = new mod.DatabaseSync(path, options.readOnly ? { readOnly: true } : {});
    } catch (err) {
      throw new StoreUnavailableError(`cannot open ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return {
      driver,
      prepare: (sql) => db.prepare(sql),
      exec: (sql) => db.exec(sql),
      pragma: (name) => {
        const row = db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown> | undefined;
        return row === undefined ? undefined : Object.values(row)[0];
      },
      get isOpen() {
        return db.isOpen;
      },
      close: () => db.close(),
    };
  }
  let Database: BetterSqliteCtor;
  try {
    Database = (await import('better-sqlite3')).default;
  } catch (err) {
    throw new StoreUnavailableError(
      'sqliteStore() on this Node needs the package better-sqlite3 12.x (npm install better-sqlite3@12), or Node 22.13+ for its built-in node:sqlite',
      { cause: err },
    );
  }
  let db: BetterSqliteDatabase;
  try {
    db = new Database(path, {
      timeout: 0,
      ...(options.readOnly ? { readonly: true, fileMustExist: true } : {}),
    });
  } catch (err) {
    throw new StoreUnavailableError(`cannot open ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return {
    driver,
    prepare: (sql) => db.prepare(sql),
    exec: (sql) => db.exec(sql),
    pragma: (name) => {
      const row = db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown> | undefined;
      return row === undefined ? undefined : Object.values(row)[0];
    },
    get isOpen() {
      return db.open;
    },
    close: () => db.close(),
  };
}

/**
 * The SQLite result code of an error from either driver, e.g. `SQLITE_BUSY` (better-sqlite3
 * sets `code`; node:sqlite sets `errcode` and `errstr`, its `code` being `ERR_SQLITE_ERROR`).
 */
export function sqliteCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; errcode?: unknown; errstr?: unknown; message?: unknown };
  if (typeof e.code === 'string' && e.code.startsWith('SQLITE_')) return e.code;
  if (typeof e.errcode === 'number') {
    // Primary result codes (the low byte) of the errors the store tells apart.
    const names: Record<number, string> = {
      5: 'SQLITE_BUSY',
      6: 'SQLITE_LOCKED',
      8: 'SQLITE_READONLY',
      10: 'SQLITE_IOERR',
      11: 'SQLITE_CORRUPT',
      13: 'SQLITE_FULL',
      14: 'SQLITE_CANTOPEN',
      19: 'SQLITE_CONSTRAINT',
      26: 'SQLITE_NOTADB',
    };
    return names[e.errcode & 0xff] ?? `SQLITE_ERROR_${e.errcode}`;
  }
  return undefined;
}
