/**
 * `callback-engine/postgres`: a durable store in one PostgreSQL schema, shared by every replica
 * of a service. Engines with distinct `node` names and the same `secrets` on one schema form a
 * cluster: each callback belongs to one shard, leased by one replica at a time, and every
 * commit is fenced by that lease. Loading this entry is what brings in the cluster code; the
 * root entry never does.
 *
 * @module
 */

import { ClusteredRouting } from './cluster/clustered-routing.js';
import { InvalidArgumentError } from './errors.js';
import { MACHINE_VERSION } from './lifecycle/persist.js';
import type { LocalRouting } from './routing/local.js';
import type { RoutingContext, RoutingProvider } from './routing/provider.js';
import type { Routing } from './routing/routing.js';
import { migrateSchema, type MigrateResult } from './store/postgres/migrate.js';
import { checkPostgresOptions, type PostgresStoreOptions } from './store/postgres/options.js';
import { POSTGRES_SCHEMA_VERSION } from './store/postgres/schema.js';
import { PostgresStore } from './store/postgres/store.js';
import type { CallbackStore } from './store/store.js';

export { POSTGRES_SCHEMA_VERSION };
export type { MigrateResult, PostgresStoreOptions };

/** The PostgreSQL store, with the routing of a replica (reports handed to their owner). */
class ReplicatedStore extends PostgresStore implements RoutingProvider {
  readonly tokensFromAnyNode = true;

  routing(local: LocalRouting, context: RoutingContext): Routing {
    return new ClusteredRouting(this, local, context);
  }
}

/**
 * A durable store in a PostgreSQL schema, shared by every replica of a service: engines with
 * distinct `node` names and the same `secrets` on one schema form a cluster. Each callback
 * belongs to one of `shards` shards, leased by one replica at a time; every commit is fenced by
 * its leases. Needs the package `pg` (node-postgres 8.x), loaded when the store opens; replicas
 * forward reports to each other over PostgreSQL, or over NATS (the package `nats`) when `nats`
 * is set. The schema is created, or upgraded, when the first replica opens it.
 *
 * @param options - connection, schema and cluster settings.
 * @returns the store, for `createCallbackEngine({ store })`.
 * @throws {@link InvalidArgumentError} for a bad option.
 * @example
 * ```ts
 * import { createCallbackEngine } from 'callback-engine';
 * import { postgresStore } from 'callback-engine/postgres';
 *
 * const engine = createCallbackEngine({
 *   node: process.env.HOSTNAME!, // distinct per replica
 *   secrets: [process.env.CALLBACK_SECRET!], // the same on every replica
 *   store: postgresStore({
 *     connectionString: process.env.DATABASE_URL!,
 *     schema: 'callbacks',
 *     nats: { servers: process.env.NATS_URL! },
 *   }),
 * });
 * await engine.ready(); // this replica holds its share of the shards
 * ```
 */
export function postgresStore(options: PostgresStoreOptions): CallbackStore {
  return new ReplicatedStore(options, checkPostgresOptions(options));
}

/**
 * Creates or upgrades a store's schema without starting an engine: for a deploy step that runs
 * before the new version's replicas start (they would do the same on open, under the same lock).
 *
 * @param options - `connectionString`, `schema` and `shards` as the replicas will pass them.
 * @returns the schema version found (0 when there was none) and the version now.
 * @throws {@link InvalidArgumentError} for a bad option; `StoreIncompatibleError` when the schema
 *   is newer than this engine, was written by another lifecycle machine version, or has another
 *   shard count; `StoreUnavailableError` when the database cannot be reached.
 * @example
 * ```ts
 * const { from, to } = await migratePostgres({ connectionString: process.env.DATABASE_URL!, schema: 'callbacks' });
 * console.log(`schema version ${from} -> ${to}`);
 * ```
 */
export async function migratePostgres(
  options: Pick<PostgresStoreOptions, 'connectionString' | 'schema' | 'shards'>,
): Promise<MigrateResult> {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(
      'migratePostgres() needs an options object with connectionString and schema',
    );
  const settings = checkPostgresOptions({
    connectionString: options.connectionString,
    schema: options.schema,
    ...(options.shards !== undefined ? { shards: options.shards } : {}),
  });
  const store = new PostgresStore(options, settings);
  return store.migrate((q) =>
    migrateSchema(
      q,
      {
        schema: options.schema,
        name: store.name,
        shards: settings.shards,
        leaseTtlMs: settings.leaseTtlMs,
      },
      { machineVersion: MACHINE_VERSION },
    ),
  );
}
