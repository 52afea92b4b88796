import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Every source file reachable through static relative imports (dynamic `import()` excluded). */
function staticGraph(entry: string, seen = new Set<string>()): Set<string> {
  if (seen.has(entry)) return seen;
  seen.add(entry);
  const text = readFileSync(entry, 'utf8');
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gm)) {
    staticGraph(join(dirname(entry), m[1]!.replace(/\.js$/, '.ts')), seen);
  }
  return seen;
}

describe('the callback-engine/http entry', () => {
  it('is a subpath export the root import never loads', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, { default: string }>;
    };
    expect(pkg.exports['./http']!.default).toBe('./dist/http/index.js');
    const rootGraph = [...staticGraph(join(root, 'src/index.ts'))].map((f) => f.slice(root.length));
    expect(rootGraph.length).toBeGreaterThan(5);
    expect(rootGraph.filter((f) => f.includes('/http/'))).toEqual([]);
    const httpGraph = [...staticGraph(join(root, 'src/http/index.ts'))].map((f) =>
      f.slice(root.length),
    );
    expect(httpGraph).toContain('/src/http/handler.ts');
  });

  it('exports the factories', async () => {
    const http = await import('../src/http/index.js');
    expect(typeof http.createDispatchHandler).toBe('function');
    expect(typeof http.serve).toBe('function');
    expect(http.openApiDocument.openapi).toBe('3.1.0');
  });
});
