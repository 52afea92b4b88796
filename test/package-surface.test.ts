/**
 * The package's public surface: every entry point exports exactly the documented names (so the
 * surface cannot grow by accident), and importing the root entry loads no PostgreSQL, cluster,
 * `pg` or NATS code.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, string | { types: string; default: string }>;
};
const api = readFileSync(join(root, 'docs/api.md'), 'utf8');

/** The runtime names of each entry point, as docs/api.md documents them. */
const SURFACE: Record<string, string[]> = {
  '.': [
    'ACTIVE_STATUSES',
    'AlreadySettledError',
    'CallbackEngineError',
    'DISPATCH_STATUSES',
    'DuplicateKeyError',
    'EarlyEventsFullError',
    'EngineClosedError',
    'InvalidArgumentError',
    'InvalidDataError',
    'InvalidMessageError',
    'LeaseLostError',
    'MAX_TOKEN_LENGTH',
    'NothingToRetryError',
    'OriginRefusedError',
    'OriginUnavailableError',
    'ParentInactiveError',
    'ParentNotFoundError',
    'PayloadTooLargeError',
    'PoolSaturatedError',
    'SecretMismatchError',
    'StepTimeoutError',
    'StoreIncompatibleError',
    'StoreLockedError',
    'StoreUnavailableError',
    'TERMINAL_STATUSES',
    'UnknownAnchorError',
    'createCallbackEngine',
    'createSimulatedClock',
    'decodeToken',
    'isStandardSchema',
    'isTerminal',
    'lifecycleMachine',
    'machineGraph',
    'memoryStore',
    'parseDuration',
    'systemClock',
    'toError',
    'toMachineConfig',
    'toMermaid',
    'toStatelyJson',
    'toSvg',
    'typedEngine',
    'workerStep',
  ],
  './http': [
    'CE_BATCH_JSON',
    'CE_JSON',
    'HTTP_DEFAULTS',
    'OUTCOME_HEADER',
    'contentMode',
    'createDispatchHandler',
    'createOpenApiDocument',
    'openApiDocument',
    'serve',
    'signRequest',
  ],
  './dashboard': [
    'DASHBOARD_DEFAULTS',
    'callbackPath',
    'createDashboard',
    'createMonitor',
    'dashboardPage',
    'pathLine',
    'pathMermaid',
    'pathSvg',
    'timelineOf',
    'timelineSvg',
    'timelineText',
    'withDashboard',
  ],
  './sqlite': ['SQLITE_SCHEMA_VERSION', 'sqliteStore'],
  './postgres': ['POSTGRES_SCHEMA_VERSION', 'migratePostgres', 'postgresStore'],
  './store': ['isCallbackStore', 'memoryStore'],
  './client': [
    'CLIENT_DEFAULTS',
    'CallbackClientError',
    'InvalidArgumentError',
    'ReportAbortedError',
    'ReportBadAnswerError',
    'ReportRefusedError',
    'ReportUnavailableError',
    'backoffDelay',
    'createCallbackClient',
    'parseRetryAfter',
  ],
  './metrics': ['createMetrics', 'withMetrics'],
  './fastify': ['callbackEngine', 'default'],
  './express': ['callbackEngineRouter'],
};

/** The source file behind a package export (`./dist/x.js` → `src/x.ts`). */
function sourceOf(subpath: string): string {
  const target = pkg.exports[subpath]!;
  const dist = typeof target === 'string' ? target : target.default;
  return join(root, dist.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts'));
}

/** The part of docs/api.md under the heading of one entry point. */
function apiSection(subpath: string): string {
  const name = subpath === '.' ? 'callback-engine' : `callback-engine/${subpath.slice(2)}`;
  const start = api.search(new RegExp(`^## \`${name}\``, 'm'));
  expect(start, `docs/api.md has a section for ${name}`).toBeGreaterThan(-1);
  const rest = api.slice(start + 3);
  const end = rest.search(/^## /m);
  return end === -1 ? rest : rest.slice(0, end);
}

describe('the package surface', () => {
  it('has exactly the documented entry points', () => {
    const subpaths = Object.keys(pkg.exports).filter((s) => s !== './package.json');
    expect(subpaths.sort()).toEqual(Object.keys(SURFACE).sort());
  });

  it.each(Object.keys(SURFACE))('%s exports exactly its documented names', async (subpath) => {
    const mod = (await import(pathToFileURL(sourceOf(subpath)).href)) as Record<string, unknown>;
    expect(Object.keys(mod).sort()).toEqual(SURFACE[subpath]);
    const section = apiSection(subpath);
    if (subpath === './store') return; // experimental: documented by its TSDoc
    const undocumented = SURFACE[subpath]!.filter(
      (name) => !new RegExp(`\`${name}\\b`).test(section),
    );
    expect(undocumented, `names missing from its section of docs/api.md`).toEqual([]);
  });
});

describe('importing the root entry', () => {
  function loadedBy(entry: string): string[] {
    const dir = mkdtempSync(join(tmpdir(), 'cbe-loads-'));
    try {
      const script = join(dir, 'load.mjs');
      writeFileSync(script, `await import(${JSON.stringify(pathToFileURL(entry).href)});\n`);
      const out = execFileSync(
        process.execPath,
        ['--import', 'tsx', '--import', './test/fixtures/record-loads.mjs', script],
        { cwd: root, encoding: 'utf8', timeout: 60_000 },
      );
      return JSON.parse(out.trim().split('\n').pop()!) as string[];
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const clustered = (url: string): boolean =>
    /\/src\/(cluster|store\/postgres)\/|\/src\/postgres\.ts$|\/node_modules\/(pg|pg-[\w-]+|nats|@nats-io\/[\w-]+)\//.test(
      url,
    );

  it('loads no PostgreSQL, cluster, pg or NATS module', () => {
    const loaded = loadedBy(join(root, 'src/index.ts'));
    expect(loaded.some((u) => u.endsWith('/src/index.ts'))).toBe(true);
    expect(loaded.filter(clustered)).toEqual([]);
  }, 90_000);

  it('(the check sees them where they are loaded: the postgres entry)', () => {
    const loaded = loadedBy(join(root, 'src/postgres.ts'));
    expect(loaded.filter(clustered).length).toBeGreaterThan(3);
  }, 90_000);
});
