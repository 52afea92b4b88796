/**
 * The options of `postgresStore()`: what users pass, checked, and the cluster settings resolved
 * from them.
 *
 * @module
 */

import { durationMs } from '../../duration.js';
import { InvalidArgumentError } from '../../errors.js';
import { checkKnownKeys } from '../../keys.js';
import { DEFAULT_SHARDS } from '../shards.js';

/** Options of `postgresStore()`. */
export interface PostgresStoreOptions {
  /** A PostgreSQL connection string, e.g. `postgres://app@db:5432/app`. */
  connectionString: string;
  /** The schema holding the tables; created on open. Replicas of one cluster share it. */
  schema: string;
  /** Number of shards (fixed when the schema is created). @default 64 */
  shards?: number;
  /** How long a shard lease lasts without renewal (ms, or an ISO 8601 duration such as `"PT10S"`). @default 10000 */
  leaseTtl?: number | string;
  /** How often a replica renews its leases and rebalances. @default 3000 */
  renewInterval?: number | string;
  /** How long a forwarded report waits for its owner before it is queued durably. @default 2000 */
  forwardTimeout?: number | string;
  /**
   * The forwarding transport: NATS request-reply. Without it, replicas forward to each other
   * over PostgreSQL LISTEN/NOTIFY on one extra connection each (slower than NATS, see the
   * benchmarks). Either way, a report whose owner does not answer in time is queued durably
   * (202) and applied by the owner from the inbox.
   */
  nats?: { servers: string | string[] } | undefined;
  /** Connections in the pool. @default 8 */
  maxConnections?: number;
}

export const OPTION_KEYS: readonly string[] = Object.freeze([
  'connectionString',
  'schema',
  'shards',
  'leaseTtl',
  'renewInterval',
  'forwardTimeout',
  'nats',
  'maxConnections',
]);

/** The resolved cluster settings of a PostgreSQL store. */
export interface ClusterSettings {
  readonly shards: number;
  readonly leaseTtlMs: number;
  readonly renewIntervalMs: number;
  readonly forwardTimeoutMs: number;
  readonly nats: { servers: string | string[] } | undefined;
  /** A prefix for transport subjects, unique per database and schema. */
  readonly subject: string;
}

/** A schema name: a lower-case SQL identifier. */
export const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

/** Resolves and checks {@link PostgresStoreOptions}. */
function settings(options: PostgresStoreOptions): ClusterSettings {
  const shards = options.shards ?? DEFAULT_SHARDS;
  if (!Number.isSafeInteger(shards) || shards < 1 || shards > 4096)
    throw new InvalidArgumentError(
      `postgresStore options.shards must be an integer from 1 to 4096 (got ${String(options.shards)})`,
    );
  const ms = (key: 'leaseTtl' | 'renewInterval' | 'forwardTimeout', dflt: number): number => {
    const v = options[key];
    const out =
      v === undefined
        ? dflt
        : typeof v === 'number'
          ? v
          : durationMs(`postgresStore options.${key}`, v, 0);
    if (!Number.isFinite(out))
      throw new InvalidArgumentError(
        `postgresStore options.${key} must be a number of ms or an ISO 8601 duration`,
      );
    if (!(out > 0))
      throw new InvalidArgumentError(`postgresStore options.${key} must be longer than zero`);
    return out;
  };
  const leaseTtlMs = ms('leaseTtl', 10_000);
  const renewIntervalMs = ms('renewInterval', 3_000);
  if (renewIntervalMs * 2 > leaseTtlMs)
    throw new InvalidArgumentError(
      `postgresStore options.renewInterval (${renewIntervalMs} ms) must be at most half of leaseTtl (${leaseTtlMs} ms), so a lease is renewed before it ends`,
    );
  const nats = options.nats;
  if (
    nats !== undefined &&
    (typeof nats !== 'object' ||
      nats === null ||
      !(typeof nats.servers === 'string' || Array.isArray(nats.servers)))
  )
    throw new InvalidArgumentError(
      'postgresStore options.nats must be { servers: string | string[] }',
    );
  let db = 'db';
  try {
    db = new URL(options.connectionString).pathname.replace(/\W/g, '') || 'db';
  } catch {
    // keep 'db'
  }
  return {
    shards,
    leaseTtlMs,
    renewIntervalMs,
    forwardTimeoutMs: ms('forwardTimeout', 2_000),
    nats,
    subject: `cbe.${db}.${options.schema}`,
  };
}

/**
 * Checks {@link PostgresStoreOptions} (known keys, types, ranges) and resolves the cluster settings.
 * @throws {@link InvalidArgumentError} naming the first bad option.
 */
export function checkPostgresOptions(options: PostgresStoreOptions): ClusterSettings {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(
      'postgresStore() needs an options object with connectionString and schema',
    );
  checkKnownKeys('postgresStore options', options, OPTION_KEYS);
  if (typeof options.connectionString !== 'string' || options.connectionString.length === 0)
    throw new InvalidArgumentError('postgresStore options.connectionString must be a string');
  if (typeof options.schema !== 'string' || !SCHEMA_RE.test(options.schema))
    throw new InvalidArgumentError(
      `postgresStore options.schema must be a lower-case SQL identifier (got ${JSON.stringify(options.schema)})`,
    );
  const max = options.maxConnections;
  if (max !== undefined && (!Number.isSafeInteger(max) || max < 2 || max > 100))
    throw new InvalidArgumentError(
      `postgresStore options.maxConnections must be an integer from 2 to 100 (got ${String(max)})`,
    );
  return settings(options);
}
