/**
 * The store's connection to PostgreSQL: one node-postgres pool (loaded on
 * first use, so the root entry never loads `pg`), one statement as its own
 * transaction, several statements in one transaction on one connection, and
 * every driver failure as a typed, retryable error.
 *
 * @module
 */

import type pg from 'pg';
import { LeaseLostError, StoreUnavailableError } from '../../errors.js';
import { toError } from '../../thrown.js';

/** Runs one statement and returns its rows. */
export type Query = <R>(text: string, params?: unknown[]) => Promise<R[]>;

/** The error code of a PostgreSQL server's answer (e.g. `40P01`), if it has one. */
export const pgCode = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;

/** node-postgres's pool class, loaded on first use. */
export async function loadPool(): Promise<typeof pg.Pool> {
  try {
    return (await import('pg')).default.Pool;
  } catch (err) {
    throw new StoreUnavailableError(
      'postgresStore() needs the package pg (node-postgres 8.x): npm install pg',
      { cause: err },
    );
  }
}

/** One store's pool: set while the store is open (or while a migration runs). */
export class PgDb {
  /** The store's name, for messages. */
  readonly name: string;
  #pool: pg.Pool | undefined;
  #closed = false;

  constructor(name: string) {
    this.name = name;
  }

  /** The connection pool (open). */
  get #open(): pg.Pool {
    if (!this.#pool || this.#closed) throw new StoreUnavailableError(`${this.name} is not open`);
    return this.#pool;
  }

  /** Uses `pool` from now on (`undefined`: none, the store is not open). */
  attach(pool: pg.Pool | undefined): void {
    this.#pool = pool;
  }

  /** One statement (its own transaction). */
  readonly q: Query = async <R>(text: string, params: unknown[] = []): Promise<R[]> =>
    (await this.#open.query(text, params)).rows as R[];

  /** Statements in one transaction on one connection. */
  async tx<T>(fn: (q: Query) => Promise<T>): Promise<T> {
    const client = await this.#open.connect();
    let broken: Error | undefined;
    // A connection that dies between two statements must not throw from an event emitter.
    const onError = (err: Error) => (broken = err);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const out = await fn(
        async <R>(text: string, params: unknown[] = []) =>
          (await client.query(text, params)).rows as R[],
      );
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => (broken = toError(e)));
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  /** Wraps a driver failure as a typed, retryable error (a fenced commit as a lost lease). */
  unavailable(what: string, err: unknown): StoreUnavailableError {
    if (err instanceof StoreUnavailableError) return err;
    const code = pgCode(err);
    if (code === 'CB001')
      return new LeaseLostError(`${what}: this replica no longer owns the shard`, { cause: err });
    return new StoreUnavailableError(
      `${what} on ${this.name} failed${code ? ` (${code})` : ''}: ${toError(err).message}`,
      { cause: err },
    );
  }

  /** Ends the pool; the store stays closed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.end().catch(() => {});
  }

  /** Whether {@link close} ran. */
  get closed(): boolean {
    return this.#closed;
  }
}
