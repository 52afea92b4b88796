/**
 * A PostgreSQL server of a test's own ({@link startPrivatePostgres}), which the test may stop,
 * crash and restart without disturbing the shared server.
 *
 * @module
 */

import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './spawn.js';

/** A PostgreSQL server of its own (see {@link startPrivatePostgres}). */
export interface PrivatePostgres {
  /** Connection string of its `postgres` database as user `postgres` (trust auth). */
  readonly url: string;
  readonly port: number;
  /** Its temp directory (data, socket, log). */
  readonly dir: string;
  /** Stops the server: `fast` (clean shutdown) or `immediate` (a crash; recovery at the next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same data and port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Its log so far (for diagnostics). */
  log(): string;
  /** Stops it (immediate) and removes its directory. */
  destroy(): Promise<void>;
}

const run = promisify(execFile);

/** Where Debian keeps the PostgreSQL server programs. @default `CBE_PG_BIN` or version 15's */
export const PG_BIN = process.env.CBE_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/**
 * Starts a PostgreSQL server of its own in a temp directory, on a free port, so a test can
 * stop and restart its database without disturbing a shared server: `initdb` and `pg_ctl` run
 * as user `postgres` (through `runuser` when this process is root). Trust auth, 127.0.0.1 only.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'cbe-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const root = process.getuid?.() === 0;
  if (root) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const as = (program: string, args: string[]) =>
    root
      ? run('runuser', ['-u', 'postgres', '--', join(PG_BIN, program), ...args])
      : run(join(PG_BIN, program), args);
  await as('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const start = async () => {
    await as('pg_ctl', ['-D', data, '-l', logFile, '-o', options, '-w', '-t', '30', 'start']);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    await as('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '30', 'stop']);
  };
  await start();
  let destroyed = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop,
    start,
    log: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        await stop('immediate');
      } catch {
        // Already stopped.
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
