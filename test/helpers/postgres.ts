import pg from 'pg';
import {
  createCallbackEngine,
  type CallbackEngine,
  type CallbackEngineOptions,
} from '../../src/index.js';
import { postgresStore as makeStore, type PostgresStoreOptions } from '../../src/postgres.js';
import type { PostgresStore } from '../../src/store/postgres/store.js';
import { shardOf } from '../../src/store/shards.js';
import { SECRET } from './engine.js';

/**
 * The PostgreSQL server of these tests: `PG_URL` (or its older name `CBE_PG`), else the local
 * server. When neither is set and nothing answers locally, test/setup/postgres.ts starts an
 * embedded server for the run and sets `PG_URL` before any test file loads.
 */
export const PG = pgUrl() ?? 'postgres://postgres@127.0.0.1:5432/test';
/** The NATS server of these tests. */
export const NATS = process.env.CBE_NATS || 'nats://127.0.0.1:4222';
import { listening } from '../harness/spawn.js';
export { listening };

/** Whether PostgreSQL answers (else the suites that need it are skipped, with a notice). */
export const pgAvailable = (await listening(PG, 5432)) || process.env.CI === 'true';
/**
 * Whether NATS answers. Without it, replicas forward over PostgreSQL, and the tests that are
 * about NATS itself are skipped with a printed notice.
 */
export const natsAvailable = await listening(NATS, 4222);

/** `PG_URL`, else `CBE_PG`; an empty value counts as unset. */
export function pgUrl(): string | undefined {
  return process.env.PG_URL || process.env.CBE_PG || undefined;
}

/** Prints why a suite does not run or runs otherwise (a skipped suite must say so). */
export function notice(what: string, why: string, tag: 'skipped' | 'notice' = 'skipped'): void {
  process.stderr.write(`\n[${tag}] ${what}: ${why}\n`);
}
if (!pgAvailable)
  notice(
    'PostgreSQL suites',
    `nothing answers at ${PG.replace(/\/\/[^@/]*@/, '//')} (set PG_URL, or let npm test start an embedded server)`,
  );
if (!natsAvailable)
  notice(
    'NATS forwarding',
    `nothing answers at ${NATS}: replicas in these tests forward over PostgreSQL instead`,
    'notice',
  );

/** Lease settings small enough for fast tests (renewInterval at most half of leaseTtl). */
export const TTL = 2000;
export const RENEW = 500;

/** Options of {@link PgFixture.engine}: the store's cluster settings and the engine's own. */
export interface ReplicaOptions {
  /** Forward over NATS (else over PostgreSQL). @default whether NATS answers */
  nats?: boolean;
  store?: Partial<Omit<PostgresStoreOptions, 'connectionString' | 'schema' | 'nats'>>;
  engine?: CallbackEngineOptions;
}

let counter = 0;

/**
 * PostgreSQL schemas, engines, stores and a SQL client of one test file: `fresh()` starts a new
 * schema `cbe_ps_<pid>_<n>` for the next test; `engine()` opens a replica on it, `store()` a bare
 * store; `cleanup()` (in afterEach) closes every engine and store and drops every schema used.
 */
export class PgFixture {
  schema = '';
  readonly #schemas: string[] = [];
  readonly #engines: CallbackEngine[] = [];
  readonly #stores: PostgresStore[] = [];
  #client: pg.Client | undefined;

  /** A new schema for the next test. */
  fresh(): string {
    this.schema = `cbe_ps_${process.pid}_${++counter}`;
    this.#schemas.push(this.schema);
    return this.schema;
  }

  /** A replica named `node` on this test's schema (same secrets on every one). */
  engine(node: string, options: ReplicaOptions = {}): CallbackEngine {
    const engine = createCallbackEngine({
      node,
      secrets: [SECRET],
      store: postgresStore({
        connectionString: PG,
        schema: this.schema,
        leaseTtl: TTL,
        renewInterval: RENEW,
        maxConnections: 4,
        ...((options.nats ?? natsAvailable) ? { nats: { servers: NATS } } : {}),
        ...options.store,
      }),
      ...options.engine,
    });
    this.#engines.push(engine);
    return engine;
  }

  /** A bare store on this test's schema (not opened), closed by cleanup. */
  store(options: Partial<Omit<PostgresStoreOptions, 'connectionString' | 'schema'>> = {}) {
    const store = postgresStore({
      connectionString: PG,
      schema: this.schema,
      leaseTtl: TTL,
      renewInterval: RENEW,
      maxConnections: 2,
      ...options,
    });
    this.#stores.push(store);
    return store;
  }

  /** Runs one SQL statement on the test database (search_path is this test's schema). */
  async sql<R extends object = Record<string, unknown>>(
    text: string,
    params: unknown[] = [],
  ): Promise<R[]> {
    if (!this.#client) {
      const client = new pg.Client({ connectionString: PG });
      client.on('error', () => {});
      await client.connect();
      this.#client = client;
    }
    await this.#client.query(`SET search_path TO "${this.schema}"`);
    return (await this.#client.query(text, params)).rows as R[];
  }

  /** Closes every engine and store (errors ignored: some never opened), drops every schema. */
  async cleanup(): Promise<void> {
    await Promise.allSettled(this.#engines.splice(0).map((e) => e.close()));
    await Promise.allSettled(this.#stores.splice(0).map((s) => s.close()));
    await this.#client?.end().catch(() => {});
    this.#client = undefined;
    for (const schema of this.#schemas.splice(0)) await dropSchema(PG, schema);
  }
}

/** The schema callback-engine 0.1 wrote (version 1), before early events and the journal. */
const SCHEMA_V1 = (shards: number): string => `
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
  body text NOT NULL
);
CREATE INDEX IF NOT EXISTS callbacks_seq ON callbacks (seq);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_shard ON callbacks (shard, anchor, status);
CREATE UNIQUE INDEX IF NOT EXISTS callbacks_idem ON callbacks (idem_key) WHERE idem_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS callbacks_corr ON callbacks (corr_key)
  WHERE corr_key IS NOT NULL AND status NOT IN ('complete', 'error', 'cancel', 'timeout', 'orphan');
CREATE INDEX IF NOT EXISTS callbacks_corr_seq ON callbacks (corr_key, seq) WHERE corr_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS callbacks_parent ON callbacks (parent_id, seq) WHERE parent_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS shards (
  shard int PRIMARY KEY,
  owner text,
  epoch bigint NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO shards (shard) SELECT generate_series(0, ${shards - 1}) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS members (node text PRIMARY KEY, seen_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS inbox (
  seq bigserial PRIMARY KEY,
  shard int NOT NULL,
  callback_id text NOT NULL,
  dedup_key text NOT NULL UNIQUE,
  message text NOT NULL,
  queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS inbox_shard ON inbox (shard, seq);
CREATE TABLE IF NOT EXISTS dedup (
  key text PRIMARY KEY,
  callback_id text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
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

/** One callback row of a version-1 schema: its columns and its JSON body. */
export interface PgV1Row {
  readonly id: string;
  readonly anchor: string;
  readonly status: string;
  readonly dueAt: number | null;
  readonly body: Record<string, unknown>;
}

/**
 * Writes this test's schema as callback-engine 0.1 left it (version 1, no early events, no
 * journal), with these callbacks (each in its shard) and deduplication keys.
 */
export async function writeV1Schema(
  fx: PgFixture,
  options: {
    shards: number;
    machineVersion: string;
    rows?: readonly PgV1Row[];
    keys?: readonly { key: string; callbackId: string }[];
  },
): Promise<void> {
  await fx.sql(`CREATE SCHEMA IF NOT EXISTS "${fx.schema}"`);
  await fx.sql(SCHEMA_V1(options.shards));
  await fx.sql(
    "INSERT INTO meta (key, value) VALUES ('schema_version', '1'), ('machine_version', $1), ('shards', $2)",
    [options.machineVersion, String(options.shards)],
  );
  for (const r of options.rows ?? [])
    await fx.sql(
      'INSERT INTO callbacks (id, shard, anchor, status, due_at, body) VALUES ($1, $2, $3, $4, $5, $6)',
      [r.id, shardOf(r.id, options.shards), r.anchor, r.status, r.dueAt, JSON.stringify(r.body)],
    );
  for (const k of options.keys ?? [])
    await fx.sql('INSERT INTO dedup (key, callback_id) VALUES ($1, $2)', [k.key, k.callbackId]);
}

/** The PostgreSQL store of `options`, with its internals typed (for tests that read them). */
export function postgresStore(options: PostgresStoreOptions): PostgresStore {
  return makeStore(options) as PostgresStore;
}

/** Drops a schema and everything in it. */
export async function dropSchema(connectionString: string, schema: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`not a schema name: ${schema}`);
  const client = new pg.Client({ connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end().catch(() => {});
  }
}
