import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createCallbackEngine,
  type CallbackEngine,
  type CallbackEngineOptions,
} from '../../src/index.js';
import { type DurableStore } from '../../src/store/index.js';
import { sqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite.js';
import { SECRET } from './engine.js';
import { openDb } from './sqlite.js';

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
    /** A store to use instead of a SQLite store on `path` (a wrapper around one, say). */
    instead?: DurableStore,
  ): CallbackEngine {
    const engine = createCallbackEngine({
      node: NODE,
      secrets: [SECRET],
      store: instead ?? sqliteStore({ path, ...store }),
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

/** One callback row of a schema-1 SQLite file (before the journal): its columns and body. */
export interface V1Row {
  readonly id: string;
  readonly seq: number;
  readonly anchor: string;
  readonly status: string;
  readonly dueAt: number | null;
  readonly idempotencyKey?: string;
  readonly body: Record<string, unknown>;
}

/**
 * Writes a store file as callback-engine 0.1 (schema 1) left it: one `callbacks` table whose
 * rows hold each callback's whole state in a JSON body, no journal and no early events.
 */
export function writeV1File(path: string, machineVersion: string, rows: readonly V1Row[]): void {
  const db = openDb(path);
  try {
    db.exec('PRAGMA journal_mode = WAL');
    db.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE callbacks (
        id TEXT PRIMARY KEY, seq INTEGER NOT NULL, anchor TEXT NOT NULL, status TEXT NOT NULL,
        due_at INTEGER, idem_key TEXT, corr_key TEXT, parent_id TEXT, body TEXT NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX callbacks_seq ON callbacks (seq);
      CREATE INDEX callbacks_due ON callbacks (due_at) WHERE due_at IS NOT NULL;
      CREATE INDEX callbacks_anchor_status ON callbacks (anchor, status);
      CREATE UNIQUE INDEX callbacks_idem ON callbacks (idem_key) WHERE idem_key IS NOT NULL;
      CREATE INDEX callbacks_corr ON callbacks (corr_key, seq) WHERE corr_key IS NOT NULL;
      CREATE INDEX callbacks_parent ON callbacks (parent_id, seq) WHERE parent_id IS NOT NULL;
    `);
    db.prepare("INSERT INTO meta (key, value) VALUES ('machine_version', ?)").run(machineVersion);
    const insert = db.prepare(
      'INSERT INTO callbacks (id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, body) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)',
    );
    for (const r of rows)
      insert.run(
        r.id,
        r.seq,
        r.anchor,
        r.status,
        r.dueAt,
        r.idempotencyKey ?? null,
        JSON.stringify(r.body),
      );
    db.exec('PRAGMA user_version = 1');
  } finally {
    db.close();
  }
}
