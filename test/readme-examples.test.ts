import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The fenced block that follows `<!-- example: NAME -->` in the README. */
function block(name: string): string {
  const m = new RegExp(`<!-- example: ${name} -->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!m) throw new Error(`README has no example "${name}"`);
  return m[1]!;
}

/** Runs an example file with tsx from the repository root (tsconfig paths name the package). */
function run(file: string, env: Record<string, string> = {}): string {
  return execFileSync(process.execPath, ['--import', 'tsx', file], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, ...env },
  });
}

describe('README examples run as shown', () => {
  it('the quick-start in the README is examples/quick-start.ts, and it runs to "complete"', () => {
    const file = readFileSync(new URL('../examples/quick-start.ts', import.meta.url), 'utf8');
    expect(block('quick-start').trim()).toBe(file.trim());
    const out = run('examples/quick-start.ts');
    expect(out).toContain('created: create');
    expect(out).toMatch(
      /final: complete \{"orderId":7,.*"lastPct":100,"amount":42,"receipt":"R-7"\}/,
    );
    // The README shows what it prints.
    expect(readme).toContain(out.trim());
  });

  it('the HTTP call-in is examples/http-call-in.ts: a service, and an outside party reporting through the client', () => {
    const file = readFileSync(new URL('../examples/http-call-in.ts', import.meta.url), 'utf8');
    expect(block('http-call-in').trim()).toBe(file.trim());
    const port = String(20_000 + Math.floor(Math.random() * 20_000));
    const out = run('examples/http-call-in.ts', { PORT: port }).trim();
    expect(out).toBe('applied complete {"orderId":7,"amount":42,"paid":42}');
    expect(readme).toContain(`prints \`${out}\``);
  });
});

describe('the README starts where the user starts', () => {
  it('is short: about 300 lines at most, the rest lives in docs/', () => {
    expect(readme.split('\n').length).toBeLessThanOrEqual(310);
  });

  it('says what npm test needs, and has the sections a newcomer looks for, in order', () => {
    const sections = [...readme.matchAll(/^## (.+)$/gm)].map((m) => m[1]);
    expect(sections).toEqual([
      'Install',
      'Quick start',
      'Reporting back over HTTP',
      'Guarantees',
      'Seeing what happens',
      'Where next',
      'License',
    ]);
    for (const words of ['npm start', 'npm test', 'PG_URL', '127.0.0.1:5432', 'node:sqlite'])
      expect(readme).toContain(words);
  });

  it('links every page of docs/ from "Where next"', () => {
    const next = readme.slice(readme.indexOf('## Where next'));
    for (const page of [
      'guide',
      'http',
      'mounting',
      'durability',
      'replicas',
      'capacity',
      'operations',
      'visualization',
      'api',
      'benchmarks',
      'architecture',
    ])
      expect(next, page).toContain(`(docs/${page}.md)`);
  });
});
