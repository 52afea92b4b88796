import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createCallbackEngine,
  type CallbackEngine,
  type CallbackEngineOptions,
} from '../../src/index.js';
import { sqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite.js';
import { SECRET } from './engine.js';

/** Node name of every durable test engine (tokens name it). */
export const NODE = 'store-node';

/**
 * Temp directories and engines of one test file: `db()` makes a fresh file path in its own
 * directory, `open()` an engine on a SQLite file; `cleanup()` (in afterEach) closes every
 * engine opened and removes every directory.
 */
export class DurableFixture {
  readonly #dirs: string[] = [];
  readonly #engines: CallbackEngine[] = [];

  /** A fresh database path in a new temp directory. */
  db(): string {
    const dir = mkdtempSync(join(tmpdir(), 'cbe-'));
    this.#dirs.push(dir);
    return join(dir, 'callbacks.db');
  }

  /** An engine on the SQLite file at `path` (same node and secrets every time). */
  open(
    path: string,
    options: CallbackEngineOptions = {},
    store: Omit<SqliteStoreOptions, 'path'> = {},
  ): CallbackEngine {
    const engine = createCallbackEngine({
      node: NODE,
      secrets: [SECRET],
      store: sqliteStore({ path, ...store }),
      ...options,
    });
    this.#engines.push(engine);
    return engine;
  }

  /** Closes every engine (errors ignored: some never opened) and removes the temp directories. */
  async cleanup(): Promise<void> {
    await Promise.allSettled(this.#engines.splice(0).map((e) => e.close()));
    for (const dir of this.#dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/** Shorthand for a report message. */
export function report(
  token: string,
  callbackStatus: string,
  callbackData?: Record<string, unknown>,
) {
  return { type: 'CALLBACK', callbackToken: token, callbackStatus, callbackData } as never;
}

/** One turn of the event loop: lets the group commit of the current turn run. */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
