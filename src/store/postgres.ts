/**
 * `callback-engine/postgres`: a durable store in one PostgreSQL schema, shared
 * by every replica of a service (see `postgresStore()`).
 *
 * @module
 */

export {
  dropSchema,
  isPostgresStore,
  postgresStore,
  PostgresStore,
  POSTGRES_SCHEMA_VERSION,
  type ClusterSettings,
  type HoldEarlyOutcome,
  type PostgresStoreOptions,
  type SharedEarlyRow,
} from './postgres/store.js';
