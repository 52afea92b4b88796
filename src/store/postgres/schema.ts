/**
 * The PostgreSQL store's schema and its numbered migrations, run at open by
 * the first replica under an advisory lock (one migrator at a time). Every
 * replica of a schema must run the same version of callback-engine: stop them
 * all, start one of the new version (it migrates), then the rest.
 *
 * Version 2 (this one): `callbacks` holds each callback's indexed columns and
 * its fixed part; `journal` its entries (history and the one write path);
 * `snapshots` its state folded up to some entry; `dedup` the deduplication
 * keys of its reports (unique per callback); `inbox` reports queued for the
 * next owner of a shard; `shards` and `members` the leases; `early_events`
 * CloudEvents held for callbacks not created yet. Version 1 kept a callback's
 * whole state in one row and deduplication keys across all callbacks.
 *
 * @module
 */

import { TERMINAL_STATUSES } from '../../lifecycle/statuses.js';

/** The schema version this engine writes; a newer schema is refused. */
export const POSTGRES_SCHEMA_VERSION = 2;

/** Terminal statuses as a SQL list. */
export const TERMINAL_SQL = TERMINAL_STATUSES.map((s) => `'${s}'`).join(', ');

/** Tables and indexes of version 2 that did not change since version 1. */
const SHARED = (shards: number): string => `
CREATE TABLE IF NOT EXISTS shards (
  shard int PRIMARY KEY,
  owner text,
  epoch bigint NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO shards (shard) SELECT generate_series(0, ${shards - 1}) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS members (node text PRIMARY KEY, seen_at timestamptz NOT NULL);
CREATE OR REPLACE FUNCTION fence(p_node text, p_shards int[], p_epochs bigint[]) RETURNS void AS $f$
DECLARE n int;
BEGIN
  SELECT count(*) INTO n FROM (
    SELECT 1 FROM shards s
    JOIN unnest(p_shards, p_epochs) AS f(shard, epoch) ON s.shard = f.shard AND s.epoch = f.epoch
    WHERE s.owner = p_node AND s.expires_at > now()
    FOR SHARE OF s) held;
  IF n <> cardinality(p_shards) THEN
    RAISE EXCEPTION 'lease lost' USING ERRCODE = 'CB001';
  END IF;
END $f$ LANGUAGE plpgsql;
`;

/** Held early events (anchors with `early`), shared by every replica. */
export const EARLY_SCHEMA = `
CREATE TABLE IF NOT EXISTS early_events (
  seq bigserial PRIMARY KEY,
  dedup_key text NOT NULL UNIQUE,
  anchor text NOT NULL,
  corr_key text NOT NULL,
  status text NOT NULL,
  data text NOT NULL,
  bytes int NOT NULL,
  held_at bigint NOT NULL,
  expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS early_events_corr ON early_events (corr_key, seq);
CREATE INDEX IF NOT EXISTS early_events_anchor ON early_events (anchor);
CREATE INDEX IF NOT EXISTS early_events_expiry ON early_events (expires_at);
`;

/** The journal, snapshots and per-callback keys (new in version 2). */
const JOURNAL = `
CREATE TABLE IF NOT EXISTS snapshots (
  id text PRIMARY KEY,
  seq bigint NOT NULL,
  body text NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
  callback_id text NOT NULL,
  seq bigint NOT NULL,
  at bigint NOT NULL,
  entry text NOT NULL,
  PRIMARY KEY (callback_id, seq)
);
CREATE TABLE IF NOT EXISTS dedup (
  callback_id text NOT NULL,
  key text NOT NULL,
  at bigint NOT NULL,
  PRIMARY KEY (callback_id, key)
);
CREATE INDEX IF NOT EXISTS dedup_at ON dedup (at);
`;

/** A new schema at version 2. */
export const SCHEMA_V2 = (shards: number): string => `
CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS callbacks (
  id text PRIMARY KEY,
  shard int NOT NULL,
  seq bigserial NOT NULL,
  anchor text NOT NULL,
  status text NOT NULL,
  due_at bigint,
  idem_key text,
  corr_key text,
  parent_id text,
  head bigint NOT NULL,
  owed boolean,
  meta text NOT NULL
);
CREATE INDEX IF NOT EXISTS callbacks_seq ON callbacks (seq);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_shard ON callbacks (shard, anchor, status);
CREATE UNIQUE INDEX IF NOT EXISTS callbacks_idem ON callbacks (idem_key) WHERE idem_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS callbacks_corr ON callbacks (corr_key)
  WHERE corr_key IS NOT NULL AND status NOT IN (${TERMINAL_SQL});
CREATE INDEX IF NOT EXISTS callbacks_corr_seq ON callbacks (corr_key, seq) WHERE corr_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_parent ON callbacks (parent_id, seq) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_owed ON callbacks (shard) WHERE owed;
${JOURNAL}
CREATE TABLE IF NOT EXISTS inbox (
  seq bigserial PRIMARY KEY,
  shard int NOT NULL,
  callback_id text NOT NULL,
  dedup_key text NOT NULL,
  message text NOT NULL,
  queued_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (callback_id, dedup_key)
);
CREATE INDEX IF NOT EXISTS inbox_shard ON inbox (shard, seq);
${SHARED(shards)}
${EARLY_SCHEMA}
`;

/** A JSON object key copied only when present (jsonb_build_object would write `null`). */
const opt = (from: string, key: string, as = key): string =>
  `CASE WHEN ${from} ? '${key}' THEN jsonb_build_object('${as}', ${from}->'${key}') ELSE '{}'::jsonb END`;

/**
 * Version 1 → 2: each row's body splits into its fixed part (`meta`) and a snapshot at entry 0
 * (a pending retry becomes the invocation it owes); deduplication keys become per callback;
 * queued reports are unique per callback and key. Journals start empty: history is kept from the
 * upgrade on.
 */
export const MIGRATE_1_TO_2 = `
ALTER TABLE callbacks ADD COLUMN head bigint NOT NULL DEFAULT 0;
ALTER TABLE callbacks ADD COLUMN owed boolean;
ALTER TABLE callbacks ADD COLUMN meta text;
ALTER TABLE dedup RENAME TO dedup_v1;
${JOURNAL}
INSERT INTO snapshots (id, seq, body)
  SELECT id, 0, (jsonb_build_object('head', 0, 'snapshot', b->'snapshot', 'lastActivity', b->'lastActivity')
    || ${opt('b', 'removeAt')} || ${opt('b', 'stepError')} || ${opt('b', 'terminalReport')}
    || CASE WHEN b ? 'retry' THEN jsonb_build_object('owed', jsonb_build_object(
         'step', b->'retry'->'status', 'attempt', b->'retry'->'attempt',
         'report', b->'retry'->'report', 'at', b->'retry'->'at')) ELSE '{}'::jsonb END)::text
  FROM (SELECT id, body::jsonb AS b FROM callbacks) AS v1;
UPDATE callbacks SET
  meta = (jsonb_build_object('token', b->'token', 'createdAt', b->'createdAt', 'retention', b->'retention')
    || ${opt('b', 'tags')} || ${opt('b', 'parentToken')} || ${opt('b', 'deadlineAt')}
    || ${opt('b', 'heartbeatMs')})::text,
  owed = CASE WHEN b ? 'retry' THEN true END
  FROM (SELECT id AS vid, body::jsonb AS b FROM callbacks) AS v1 WHERE callbacks.id = v1.vid;
ALTER TABLE callbacks ALTER COLUMN meta SET NOT NULL;
ALTER TABLE callbacks ALTER COLUMN head DROP DEFAULT;
ALTER TABLE callbacks DROP COLUMN body;
CREATE INDEX IF NOT EXISTS callbacks_owed ON callbacks (shard) WHERE owed;
INSERT INTO dedup (callback_id, key, at)
  SELECT callback_id, key, (extract(epoch FROM applied_at) * 1000)::bigint FROM dedup_v1
  ON CONFLICT DO NOTHING;
DROP TABLE dedup_v1;
ALTER TABLE inbox DROP CONSTRAINT IF EXISTS inbox_dedup_key_key;
ALTER TABLE inbox ADD CONSTRAINT inbox_callback_dedup UNIQUE (callback_id, dedup_key);
UPDATE meta SET value = '2' WHERE key = 'schema_version';
`;
