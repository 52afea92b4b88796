/**
 * `sqliteStore()`: a durable store in one embedded SQLite file, on `node:sqlite`
 * (built into Node 22.13+ and 24) or `better-sqlite3` (Node 20). WAL journal,
 * one transaction per group commit, one engine per file.
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import type { SqliteDriverOption } from './sqlite/driver.js';
import { SqliteStore } from './sqlite/store.js';
import type { DurableStore } from './store.js';

export { SQLITE_SCHEMA_VERSION } from './sqlite/schema.js';
export type { SqliteDriver, SqliteDriverOption } from './sqlite/driver.js';

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
   * How long a write waits for a lock held elsewhere (a reader such as the command line
   * checkpointing) before it fails, in ms.
   * @default 2000
   */
  busyTimeoutMs?: number;
  /**
   * Hard cap on the database size in bytes; a commit that would grow it further fails
   * with `StoreUnavailableError`, as a full disk does.
   * @default none
   */
  maxBytes?: number;
  /**
   * The SQLite library: `'node:sqlite'` (built into Node 22.13+ and 24: nothing to install or
   * compile), `'better-sqlite3'` (the native package, needed on Node 20), or `'auto'`: node:sqlite
   * where this Node has it, else better-sqlite3.
   * @default 'auto'
   */
  driver?: SqliteDriverOption;
}

const SQLITE_OPTION_KEYS: readonly string[] = Object.freeze([
  'path',
  'synchronous',
  'busyTimeoutMs',
  'maxBytes',
  'driver',
]);

/**
 * A durable store in one SQLite file (WAL mode, group commit, one engine per
 * file). Runs on Node's built-in `node:sqlite` where Node has it (22.13+, 24), else on the
 * package `better-sqlite3` 12.x, loaded only when the store opens.
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
  const driver = options.driver ?? 'auto';
  if (driver !== 'auto' && driver !== 'node:sqlite' && driver !== 'better-sqlite3')
    throw new InvalidArgumentError(
      `sqliteStore options.driver must be "auto", "node:sqlite" or "better-sqlite3" (got ${JSON.stringify(driver)})`,
    );
  return new SqliteStore({
    path: options.path,
    synchronous: sync ?? 'full',
    busyTimeoutMs: options.busyTimeoutMs ?? 2000,
    maxBytes: options.maxBytes,
    driver,
  });
}
