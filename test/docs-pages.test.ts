/**
 * The user-facing pages: links that lead somewhere, no words a user cannot know, every export of
 * every entry point in the API reference, the guarantees written down, no stray figures.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const pages = [
  'README.md',
  ...readdirSync(join(root, 'docs')).flatMap((f) => (f.endsWith('.md') ? [`docs/${f}`] : [])),
];
const text = (page: string) => readFileSync(join(root, page), 'utf8');
/** The page without its fenced blocks (prose and tables only). */
const prose = (page: string) => text(page).replace(/^```[\s\S]*?^```$/gm, '');

/** Pages other people write: linked before they exist in every branch. */
const WRITTEN_ELSEWHERE = new Set(['docs/mounting.md', 'docs/architecture.md', 'CHANGELOG.md']);

/** The GitHub-style anchor of a heading. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, '')
    .replace(/[^\p{L}\p{N} -]/gu, '')
    .replace(/ /g, '-');
}

describe('the pages', () => {
  it('exist: a guide, HTTP, durability, replicas, operations, visualization, API, benchmarks', () => {
    for (const page of [
      'guide',
      'http',
      'durability',
      'replicas',
      'operations',
      'visualization',
      'api',
      'benchmarks',
    ])
      expect(pages, page).toContain(`docs/${page}.md`);
  });

  it('link to files and headings that exist', () => {
    const problems: string[] = [];
    for (const page of pages) {
      for (const m of prose(page).matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
        const [file, anchor] = target.split('#') as [string, string | undefined];
        const path = file === '' ? page : normalize(join(dirname(page), file));
        if (!existsSync(join(root, path))) {
          if (!WRITTEN_ELSEWHERE.has(path)) problems.push(`${page}: ${target} (no ${path})`);
          continue;
        }
        if (anchor === undefined || !path.endsWith('.md')) continue;
        const headings = [...text(path).matchAll(/^#{1,6} (.+)$/gm)].map((h) => slug(h[1]!));
        if (!headings.includes(anchor)) problems.push(`${page}: ${target} (no heading #${anchor})`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('speak to users: no spec sections, issue numbers or internal names', () => {
    const words = [
      /\bspec(?:ification)? ?§?\d/i,
      /\bissue #?\d+/i,
      /\bMetrici\b/,
      /\bseeds?'? shape/i,
      /\bjournal\b/i,
      /\bDispatch Callback Service\b/,
    ];
    for (const page of pages)
      for (const w of words) {
        // The architecture page is for contributors: it names the journal, the history's source.
        if (page === 'docs/architecture.md' && w.source.includes('journal')) continue;
        expect(prose(page), `${page}: ${String(w)}`).not.toMatch(w);
      }
  });

  it('quote no benchmark figures: the measured ones live in bench/RESULTS.md', () => {
    for (const page of pages) expect(prose(page), page).not.toMatch(/\d\.\d+×|\breq\/s\b/);
    expect(text('docs/benchmarks.md')).toContain('(../bench/RESULTS.md)');
  });
});

describe('the guarantees', () => {
  const failures = [
    'the process dies inside a step',
    'before the answer',
    'with the same key',
    '`close()` while a step runs',
    'a replica dies or loses its lease',
    'a replica freezes past its lease',
    'the store is down',
    'while the service was down',
    'memory store',
  ];

  it('the full table in docs/durability.md names every failure, and the README a compact one', () => {
    const full = text('docs/durability.md');
    const readme = text('README.md');
    for (const f of failures) expect(full, f).toContain(f);
    for (const f of [
      'dies inside a step',
      'before the answer',
      '`close()`',
      'freezes',
      'store is down',
    ])
      expect(readme, f).toContain(f);
    for (const page of [full, readme]) {
      expect(page).toContain('`dedupWindow`');
      expect(page).toContain('`Callback-Dedup-Key`');
      expect(page).toContain('`CBE_ERR_STORE_UNAVAILABLE`');
    }
  });

  it('the defaults they quote are the code’s', async () => {
    const { DEFAULTS } = await import('../src/options/defaults.js');
    expect(DEFAULTS.dedupWindow).toBe('PT24H');
    expect(text('README.md')).toContain('24 hours by default');
    expect(text('docs/durability.md')).toContain(`\`'${DEFAULTS.dedupWindow}'\` by default`);
    expect(text('docs/durability.md')).toContain(`\`'${DEFAULTS.closeTimeout}'\` by default`);
  });
});

describe('the API reference', () => {
  const api = text('docs/api.md');
  const pkg = JSON.parse(text('package.json')) as {
    exports: Record<string, string | { types: string; default: string }>;
  };

  it('names every subpath of the package', () => {
    for (const subpath of Object.keys(pkg.exports)) {
      if (subpath === './package.json') continue;
      const name = subpath === '.' ? 'callback-engine' : `callback-engine/${subpath.slice(2)}`;
      expect(api, name).toContain(`\`${name}\``);
    }
  });

  it('names every function, class and value each entry point exports', async () => {
    const missing: string[] = [];
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (subpath === './package.json' || subpath === './store') continue; // experimental: its TSDoc
      const dist = typeof target === 'string' ? target : target.default;
      const source = join(root, dist.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts'));
      const mod = (await import(pathToFileURL(source).href)) as Record<string, unknown>;
      for (const name of Object.keys(mod))
        if (!new RegExp(`\`${name}\\b`).test(api)) missing.push(`${subpath}: ${name}`);
    }
    expect(missing).toEqual([]);
  });
});
