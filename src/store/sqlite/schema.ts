/**
 * The SQLite store's schema and its numbered migrations (`PRAGMA user_version`).
 *
 * Version 2 (this one): `callbacks` holds each callback's indexed columns and its
 * fixed part; `journal` its entries (the history and the one write path);
 * `snapshots` its state folded up to some entry; `dedup` the deduplication keys
 * of its reports; `early_events` CloudEvents held for callbacks not created yet.
 * Version 1 kept each callback's whole state in one row rewritten on every report.
 *
 * @module
 */

import { StoreIncompatibleError } from '../../errors.js';
import type { SqlConnection } from './driver.js';

/** The schema version this engine writes; a newer file is refused. */
export const SQLITE_SCHEMA_VERSION = 2;

const CALLBACKS_V2 = `
CREATE TABLE IF NOT EXISTS callbacks (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  anchor TEXT NOT NULL,
  status TEXT NOT NULL,
  due_at INTEGER,
  idem_key TEXT,
  corr_key TEXT,
  parent_id TEXT,
  head INTEGER NOT NULL,
  owed INTEGER,
  meta TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS callbacks_seq ON callbacks (seq);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_anchor_status ON callbacks (anchor, status);
CREATE UNIQUE INDEX IF NOT EXISTS callbacks_idem ON callbacks (idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_corr ON callbacks (corr_key, seq) WHERE corr_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_parent ON callbacks (parent_id, seq) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_owed ON callbacks (owed) WHERE owed IS NOT NULL;
CREATE TABLE IF NOT EXISTS snapshots (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
  callback_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  entry TEXT NOT NULL,
  PRIMARY KEY (callback_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup (
  callback_id TEXT NOT NULL,
  key TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (callback_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_at ON dedup (at);
`;

/** Held early events (anchors with `early`). */
const EARLY = `
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

/** A version 1 row's body. */
interface BodyV1 {
  token: string;
  createdAt: number;
  tags?: string[];
  parentToken?: string;
  deadlineAt?: number;
  heartbeatMs?: number;
  retention: number;
  terminalReport?: string;
  lastActivity: number;
  removeAt?: number;
  stepError?: unknown;
  retry?: { status: string; attempt: number; at: number; report: unknown };
  snapshot: unknown;
}

/**
 * Version 1 → 2: each row's body splits into its fixed part (`meta`) and a snapshot at entry 0;
 * a pending step retry becomes the invocation the callback owes. Journals start empty: history
 * is kept from the upgrade on.
 */
function migrate1to2(db: SqlConnection): void {
  db.exec(`
    ALTER TABLE callbacks RENAME TO callbacks_v1;
    DROP INDEX IF EXISTS callbacks_seq;
    DROP INDEX IF EXISTS callbacks_due;
    DROP INDEX IF EXISTS callbacks_anchor_status;
    DROP INDEX IF EXISTS callbacks_idem;
    DROP INDEX IF EXISTS callbacks_corr;
    DROP INDEX IF EXISTS callbacks_parent;
  `);
  db.exec(CALLBACKS_V2);
  const rows = db
    .prepare(
      'SELECT id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, body FROM callbacks_v1',
    )
    .all() as {
    id: string;
    seq: number;
    anchor: string;
    status: string;
    due_at: number | null;
    idem_key: string | null;
    corr_key: string | null;
    parent_id: string | null;
    body: string;
  }[];
  const insert = db.prepare(
    'INSERT INTO callbacks (id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, head, owed, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)',
  );
  const snap = db.prepare('INSERT INTO snapshots (id, seq, body) VALUES (?, 0, ?)');
  for (const r of rows) {
    const b = JSON.parse(r.body) as BodyV1;
    const meta: Record<string, unknown> = {
      token: b.token,
      createdAt: b.createdAt,
      retention: b.retention,
    };
    if (b.tags) meta.tags = b.tags;
    if (b.parentToken !== undefined) meta.parentToken = b.parentToken;
    if (b.deadlineAt !== undefined) meta.deadlineAt = b.deadlineAt;
    if (b.heartbeatMs !== undefined) meta.heartbeatMs = b.heartbeatMs;
    const state: Record<string, unknown> = {
      head: 0,
      snapshot: b.snapshot,
      lastActivity: b.lastActivity,
    };
    if (b.retry)
      state.owed = {
        step: b.retry.status,
        attempt: b.retry.attempt,
        report: b.retry.report,
        at: b.retry.at,
      };
    if (b.removeAt !== undefined) state.removeAt = b.removeAt;
    if (b.stepError !== undefined) state.stepError = b.stepError;
    if (b.terminalReport !== undefined) state.terminalReport = b.terminalReport;
    insert.run(
      r.id,
      r.seq,
      r.anchor,
      r.status,
      r.due_at,
      r.idem_key,
      r.corr_key,
      r.parent_id,
      b.retry ? 1 : null,
      JSON.stringify(meta),
    );
    snap.run(r.id, JSON.stringify(state));
  }
  db.exec('DROP TABLE callbacks_v1');
}

/**
 * Brings a file to the current schema in one transaction, or creates it; checks the machine
 * version it was written with.
 * @throws `StoreIncompatibleError` for a newer schema or another lifecycle machine.
 */
export function migrate(db: SqlConnection, name: string, machineVersion: string): void {
  const version = Number(db.pragma('user_version'));
  if (version > SQLITE_SCHEMA_VERSION)
    throw new StoreIncompatibleError(
      `${name} has schema version ${version}; this engine understands up to ${SQLITE_SCHEMA_VERSION} (upgrade callback-engine)`,
    );
  if (version > 0) {
    const row = db.prepare("SELECT value FROM meta WHERE key = 'machine_version'").get() as
      { value: string } | undefined;
    if (row?.value !== machineVersion)
      throw new StoreIncompatibleError(
        `${name} was written by lifecycle machine version ${row?.value ?? '(none)'}; this engine runs ${machineVersion}`,
      );
  }
  if (version === SQLITE_SCHEMA_VERSION) return;
  db.exec('BEGIN IMMEDIATE');
  try {
    if (version === 0) {
      db.exec(
        'CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;',
      );
      db.exec(CALLBACKS_V2);
      db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(
        'machine_version',
        machineVersion,
      );
    }
    if (version === 1) migrate1to2(db);
    db.exec(EARLY);
    db.exec(`PRAGMA user_version = ${SQLITE_SCHEMA_VERSION}`);
    db.exec('COMMIT');
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
}
