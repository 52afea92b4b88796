/**
 * The PostgreSQL schema: created when missing, upgraded from an older version, checked against
 * this engine (lifecycle machine version, shard count) and against the signing keys of the
 * replicas that share it. Runs in one transaction under an advisory lock, so replicas starting
 * together migrate once.
 *
 * @module
 */

import { SecretMismatchError, StoreIncompatibleError } from '../../errors.js';
import { keyringMismatch, type KeyringPeer } from '../../token.js';
import { EARLY_SCHEMA, MIGRATE_1_TO_2, POSTGRES_SCHEMA_VERSION, SCHEMA_V2 } from './schema.js';

/** One statement in the migration's transaction. */
export type Query = <R>(text: string, params?: unknown[]) => Promise<R[]>;

/** The schema to migrate. */
export interface MigrateTarget {
  readonly schema: string;
  /** The store's name in messages (never with credentials). */
  readonly name: string;
  readonly shards: number;
  readonly leaseTtlMs: number;
}

/** Who migrates. */
export interface MigrateContext {
  readonly machineVersion: string;
  /** The replica's node name and key fingerprints (checked against its peers'), if an engine. */
  readonly node?: string;
  readonly keyFingerprints?: readonly string[] | undefined;
}

/** The schema version before and after. */
export interface MigrateResult {
  /** The version found (0: there was no schema). */
  readonly from: number;
  readonly to: number;
}

/**
 * Creates or upgrades the schema and checks it fits this engine.
 * @throws `StoreIncompatibleError` (a newer schema, another machine version or shard count);
 *   {@link SecretMismatchError}.
 */
export async function migrateSchema(
  q: Query,
  target: MigrateTarget,
  context: MigrateContext,
): Promise<MigrateResult> {
  // One migrator at a time across replicas.
  await q('SELECT pg_advisory_xact_lock(hashtext($1))', [`callback-engine:${target.schema}`]);
  await q(`CREATE SCHEMA IF NOT EXISTS "${target.schema}"`);
  const hasMeta = await q<{ n: number }>(
    `SELECT count(*)::int AS n FROM information_schema.tables
     WHERE table_schema = $1 AND table_name = 'meta'`,
    [target.schema],
  );
  if (hasMeta[0]!.n === 0) {
    await q(SCHEMA_V2(target.shards));
    await q(
      `INSERT INTO meta (key, value) VALUES ('schema_version', $1), ('machine_version', $2), ('shards', $3)`,
      [String(POSTGRES_SCHEMA_VERSION), context.machineVersion, String(target.shards)],
    );
    await checkKeys(q, target, context);
    return { from: 0, to: POSTGRES_SCHEMA_VERSION };
  }
  const meta = new Map(
    (await q<{ key: string; value: string }>('SELECT key, value FROM meta')).map((r) => [
      r.key,
      r.value,
    ]),
  );
  const version = Number(meta.get('schema_version') ?? 0);
  if (version > POSTGRES_SCHEMA_VERSION)
    throw new StoreIncompatibleError(
      `${target.name} has schema version ${version}; this engine understands up to ${POSTGRES_SCHEMA_VERSION} (upgrade callback-engine)`,
    );
  if (meta.get('machine_version') !== context.machineVersion)
    throw new StoreIncompatibleError(
      `${target.name} was written by lifecycle machine version ${meta.get('machine_version') ?? '(none)'}; this engine runs ${context.machineVersion}`,
    );
  if (Number(meta.get('shards')) !== target.shards)
    throw new StoreIncompatibleError(
      `${target.name} has ${meta.get('shards')} shards; this engine was given ${target.shards} (the number is fixed per schema)`,
    );
  if (version === 1) {
    // Early events came after version 1 was first written: some version-1 schemas lack them.
    const had = await q<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [
      `"${target.schema}".early_events`,
    ]);
    if (had[0]?.t == null) await q(EARLY_SCHEMA);
    await q(MIGRATE_1_TO_2);
  }
  await checkKeys(q, target, context);
  return { from: version, to: Math.max(version, POSTGRES_SCHEMA_VERSION) };
}

/**
 * Replicas of one schema must share their signing keys: compares this replica's key
 * fingerprints (never the keys) with those last recorded for the schema and those of every live
 * replica (see `keyringMismatch`), then records its own. Runs under the migration lock.
 * @throws {@link SecretMismatchError} naming the fix.
 */
async function checkKeys(q: Query, target: MigrateTarget, context: MigrateContext): Promise<void> {
  const mine = context.keyFingerprints;
  if (mine === undefined || mine.length === 0) return;
  const own = `keys:${context.node}`;
  const rows = await q<{ key: string; value: string; live: boolean | null }>(
    `SELECT m.key, m.value, b.seen_at > now() - $1 * interval '1 millisecond' AS live
       FROM meta m LEFT JOIN members b ON m.key = 'keys:' || b.node
      WHERE m.key = 'keys' OR (m.key LIKE 'keys:%' AND m.key <> $2)`,
    [target.leaseTtlMs, own],
  );
  const peers: KeyringPeer[] = [];
  for (const r of rows) {
    if (r.key !== 'keys' && r.live !== true) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.value);
    } catch {
      continue;
    }
    const fingerprints = (parsed as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(fingerprints) || !fingerprints.every((f) => typeof f === 'string')) continue;
    peers.push({
      name:
        r.key === 'keys'
          ? 'the replica that last joined this schema'
          : `live replica ${JSON.stringify(r.key.slice(5))}`,
      fingerprints,
    });
  }
  const problem = keyringMismatch(mine, peers);
  if (problem !== undefined) throw new SecretMismatchError(`${target.name}: ${problem}`);
  await q(
    `WITH v AS (SELECT json_build_object('keys', $1::json, 'at', extract(epoch FROM now()))::text AS value)
     INSERT INTO meta (key, value) SELECT k, v.value FROM v, unnest(ARRAY['keys', $2]) AS k
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
    [JSON.stringify(mine), own],
  );
  // Replicas gone for a day (their member row is gone too) leave no keys behind.
  await q(
    `DELETE FROM meta m WHERE m.key LIKE 'keys:%'
        AND NOT EXISTS (SELECT 1 FROM members b WHERE m.key = 'keys:' || b.node)
        AND (m.value::json->>'at')::float8 < extract(epoch FROM now() - interval '1 day')`,
  );
}
