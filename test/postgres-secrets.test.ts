/**
 * Replicas of one PostgreSQL schema agree on their signing keys: the schema keeps fingerprints of
 * the keys (never the keys), and a replica whose keys do not match the others' refuses `ready()`
 * with a SecretMismatchError that names the fix, instead of joining and answering its share of
 * callbacks notFound. A rotation in three rolling steps works; skipping a step is refused.
 * Needs PostgreSQL (CBE_PG); skipped without it outside CI.
 */
import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SecretMismatchError, StoreIncompatibleError, type CallbackEngine } from '../src/index.js';
import { PG, PgFixture, listening } from './helpers/postgres.js';

const available = (await listening(PG, 5432)) || process.env.CI === 'true';

const fx = new PgFixture();
beforeEach(() => {
  fx.fresh();
});
afterEach(() => fx.cleanup());

const K1 = 'first-secret-0123456789abcdef';
const K2 = 'second-secret-0123456789abcdef';
const KX = 'someone-elses-secret-0123456789';
const fingerprint = (k: string) =>
  createHmac('sha256', k).update('callback-engine key fingerprint v1').digest('hex');

/** A replica on this test's schema with these secrets (no NATS: reads go to the database). */
async function replica(node: string, secrets: string[]): Promise<CallbackEngine> {
  const engine = fx.engine(node, { nats: false, store: { shards: 8 }, engine: { secrets } });
  engine.anchor('job');
  await engine.ready();
  return engine;
}

/** The error `ready()` rejects with (fails the test if it resolves). */
async function refusal(node: string, secrets: string[]): Promise<SecretMismatchError> {
  const engine = fx.engine(node, { nats: false, store: { shards: 8 }, engine: { secrets } });
  engine.anchor('job');
  try {
    await engine.ready();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretMismatchError);
    return err as SecretMismatchError;
  }
  throw new Error(`replica ${node} joined with secrets that do not match`);
}

describe.skipIf(!available)('replicas agree on their signing keys (spec 15)', () => {
  it('a replica with other secrets refuses ready() with an error naming the fix; the first one keeps answering', async () => {
    const a = await replica('a', [K1]);
    const created = await Promise.all(Array.from({ length: 20 }, () => a.create('job')));
    const err = await refusal('b', [KX]);
    expect(err).toBeInstanceOf(StoreIncompatibleError);
    expect(err.code).toBe('CBE_ERR_STORE_INCOMPATIBLE');
    expect(err.message).toMatch(/the secrets of this replica do not match/);
    expect(err.message).toMatch(/Give every replica of a schema the same secrets/);
    expect(err.message).toMatch(/To rotate secrets/);
    // Keys are named by fingerprint prefixes, never shown.
    expect(err.message).toContain(fingerprint(K1).slice(0, 8));
    expect(err.message).toContain(fingerprint(KX).slice(0, 8));
    expect(err.message).not.toContain(K1);
    expect(err.message).not.toContain(KX);
    // The refused replica took no shards: every callback is answered, none notFound.
    for (const cb of created) expect((await a.get(cb.token)).status).toBe('create');
    const shards = await fx.sql<{ owner: string | null }>(
      'SELECT DISTINCT owner FROM shards WHERE owner IS NOT NULL AND expires_at > now()',
    );
    expect(shards.map((r) => r.owner)).toEqual(['a']);
  });

  it('the schema keeps fingerprints of the keys, never the keys', async () => {
    await replica('a', [K1, K2]);
    const rows = await fx.sql<{ key: string; value: string }>(
      "SELECT key, value FROM meta WHERE key = 'keys' OR key LIKE 'keys:%' ORDER BY key",
    );
    expect(rows.map((r) => r.key)).toEqual(['keys', 'keys:a']);
    for (const row of rows) {
      expect(row.value).not.toContain(K1);
      expect(row.value).not.toContain(K2);
      expect((JSON.parse(row.value) as { keys: string[] }).keys).toEqual([
        fingerprint(K1),
        fingerprint(K2),
      ]);
    }
  });

  it('a whole-cluster restart with other secrets is refused too (stored tokens were signed with the old ones)', async () => {
    const a = await replica('a', [K1]);
    await a.close();
    const err = await refusal('a', [K2]);
    expect(err.message).toMatch(/the replica that last joined this schema signs tokens with key/);
  });

  it('rotation in three rolling steps works; a replica that skips a step while another lags is refused', async () => {
    let a = await replica('a', [K1]);
    let b = await replica('b', [K1]);
    const old = await a.create('job');

    // Skipping the first step: b would sign with K2, which a cannot verify.
    await b.close();
    const skipped = await refusal('b', [K2, K1]);
    expect(skipped.message).toMatch(/live replica "a" cannot verify/);

    // Step 1: the new secret after the current one, on every replica (one at a time).
    b = await replica('b', [K1, K2]);
    await a.close();
    a = await replica('a', [K1, K2]);
    // Step 2: the new secret first.
    await b.close();
    b = await replica('b', [K2, K1]);
    const signedWithK2 = await b.create('job');
    // a still signs with K1 and verifies K2; b verifies K1: both read both tokens.
    for (const e of [a, b]) {
      expect((await e.get(old.token)).status).toBe('create');
      expect((await e.get(signedWithK2.token)).status).toBe('create');
    }
    // Dropping K1 before a signs with K2: a's tokens would not verify there.
    expect((await refusal('c', [K2])).message).toMatch(/live replica "a" signs tokens with key/);
    await a.close();
    a = await replica('a', [K2, K1]);
    // Step 3: the old secret goes (tokens signed with it are no longer accepted there).
    await b.close();
    b = await replica('b', [K2]);
    await a.close();
    a = await replica('a', [K2]);
    expect((await a.get(signedWithK2.token)).status).toBe('create');
    expect((await b.get(signedWithK2.token)).status).toBe('create');
    expect((await a.get(old.token)).status).toBe('notFound');
  });
});
