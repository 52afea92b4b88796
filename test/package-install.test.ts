import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  license: string;
  dependencies: Record<string, string>;
  peerDependencies?: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
};

let work: string;
let copy: string;
let installed: string;
let files: string[];

/** Every file under `dir`, relative to it. */
function walk(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'cbe-pack-'));
  // Build and pack a copy, so the repo's own dist/ is never rewritten under other tests.
  copy = join(work, 'pkg');
  mkdirSync(copy);
  for (const f of ['package.json', 'README.md', 'LICENSE', 'tsconfig.json', 'tsconfig.build.json'])
    cpSync(join(root, f), join(copy, f));
  // The demo and the test harness sit beside the sources, as in a clone, so the build and the
  // pack below could pick them up.
  for (const d of ['src', 'demo', 'test'])
    cpSync(join(root, d), join(copy, d), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'), 'dir');
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: copy,
    },
  );
  const out = execFileSync(
    'npm',
    ['pack', '--ignore-scripts', '--json', '--pack-destination', work],
    {
      cwd: copy,
      encoding: 'utf8',
    },
  );
  const tarball = join(work, (JSON.parse(out) as { filename: string }[])[0]!.filename);

  // Install the tarball in a consumer: unpack it as node_modules/callback-engine and link its
  // dependencies from this repo (no network, no registry).
  const consumer = join(work, 'consumer');
  installed = join(consumer, 'node_modules', pkg.name);
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  // Its dependencies, and the optional peers a consumer of every subpath installs (prom-client, ...).
  for (const dep of [
    ...Object.keys(pkg.dependencies),
    ...Object.keys(pkg.peerDependencies ?? {}),
  ]) {
    mkdirSync(dirname(join(consumer, 'node_modules', dep)), { recursive: true });
    symlinkSync(join(root, 'node_modules', dep), join(consumer, 'node_modules', dep), 'dir');
  }
  writeFileSync(join(consumer, 'package.json'), '{ "name": "consumer", "type": "module" }');
  files = walk(installed);
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the published package', () => {
  it('ships an MIT LICENSE matching package.json', () => {
    expect(pkg.license).toBe('MIT');
    expect(files).toContain('LICENSE');
    const text = readFileSync(join(installed, 'LICENSE'), 'utf8');
    expect(text).toMatch(/^MIT License/);
    expect(text).toContain('callback-engine contributors');
  });

  it('ships neither the demo nor the tests and their harness (npm pack --dry-run), and dist has no demo', () => {
    expect(existsSync(join(copy, 'demo/main.ts'))).toBe(true);
    expect(existsSync(join(copy, 'test/harness/crash.ts'))).toBe(true);
    const out = execFileSync('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'], {
      cwd: copy,
      encoding: 'utf8',
    });
    const listed = (JSON.parse(out) as { files: { path: string }[] }[])[0]!.files.map(
      (f) => f.path,
    );
    expect(listed).toContain('dist/index.js');
    expect(listed).toContain('dist/cli.js');
    const shipped = (f: string) =>
      f.startsWith('demo/') ||
      f.startsWith('test/') ||
      f.startsWith('src/') ||
      /(^|\/)(demo|harness)(\/|$)/.test(f) ||
      /crash-server|replica-server|cluster-load/.test(f);
    expect(listed.filter(shipped)).toEqual([]);
    expect(files.filter(shipped)).toEqual([]);
    // The build (tsconfig.build.json) compiled nothing of the demo.
    expect(walk(join(copy, 'dist')).filter((f) => /demo|harness/i.test(f))).toEqual([]);
    // The shipped command line has no demo command to run it.
    expect(readFileSync(join(installed, 'dist/cli.js'), 'utf8')).not.toMatch(
      /import\(['"]\.\/demo\//,
    );
  });

  it('has no export condition pointing at a file outside the tarball', () => {
    const targets = Object.values(pkg.exports).flatMap((v) =>
      typeof v === 'string' ? [v] : Object.values(v),
    );
    for (const t of targets) expect(files, t).toContain(t.replace(/^\.\//, ''));
    for (const v of Object.values(pkg.exports))
      if (typeof v !== 'string') expect(Object.keys(v)).not.toContain('source');
  });

  it('ships source maps that embed their sources (src/ is not shipped)', () => {
    expect(files.some((f) => f.startsWith('src/'))).toBe(false);
    const maps = files.filter((f) => f.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    for (const m of maps) {
      const map = JSON.parse(readFileSync(join(installed, m), 'utf8')) as {
        sources: string[];
        sourcesContent?: (string | null)[];
      };
      expect(map.sourcesContent?.length, m).toBe(map.sources.length);
      expect(
        map.sourcesContent!.every((c) => typeof c === 'string' && c.length > 0),
        m,
      ).toBe(true);
    }
  });

  it('installs in a consumer where every subpath imports with node, and an engine runs', () => {
    const subpaths = Object.keys(pkg.exports)
      .filter((k) => k !== './package.json')
      .map((k) => (k === '.' ? pkg.name : `${pkg.name}/${k.slice(2)}`));
    expect(subpaths).toEqual(
      expect.arrayContaining([
        'callback-engine',
        'callback-engine/http',
        'callback-engine/dashboard',
        'callback-engine/sqlite',
      ]),
    );
    const script = `
      const names = ${JSON.stringify(subpaths)};
      for (const n of names) {
        const m = await import(n);
        if (Object.keys(m).length === 0) throw new Error(n + ' exports nothing');
      }
      const { createCallbackEngine } = await import('callback-engine');
      const engine = createCallbackEngine({ secrets: ['a-long-enough-secret-0123'] });
      engine.anchor('job');
      const cb = await engine.create('job');
      const done = await engine.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'complete' });
      await engine.close();
      console.log('ok', names.length, done.status);
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: join(installed, '..', '..'),
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out.trim()).toBe(`ok ${subpaths.length} complete`);
    expect(existsSync(join(installed, 'dist/index.js'))).toBe(true);
  });
});
