import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const doc = readFileSync(new URL('../docs/mounting.md', import.meta.url), 'utf8');

/** The fenced block that follows `<!-- example: NAME -->` in docs/mounting.md. */
function block(name: string): string {
  const m = new RegExp(`<!-- example: ${name} -->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\``).exec(doc);
  if (!m) throw new Error(`docs/mounting.md has no example "${name}"`);
  return m[1]!;
}

describe('docs/mounting.md examples run as shown', () => {
  it.each(['mount-fastify', 'mount-express'])(
    'the %s block is the example file of that name; run, its callback URL carries the prefix and the signed report is applied',
    (name) => {
      const file = readFileSync(new URL(`../examples/${name}.ts`, import.meta.url), 'utf8');
      expect(block(name).trim()).toBe(file.trim());
      const port = String(20_000 + Math.floor(Math.random() * 20_000));
      const out = execFileSync(process.execPath, ['--import', 'tsx', `examples/${name}.ts`], {
        encoding: 'utf8',
        timeout: 30_000,
        env: { ...process.env, PORT: port },
      });
      expect(out).toMatch(
        new RegExp(`^callback URL: http://127\\.0\\.0\\.1:${port}/hooks/callbacks/[\\w-]+$`, 'm'),
      );
      expect(out).toContain('applied complete {"orderId":7,"amount":42,"paid":42}');
    },
  );

  it('every ts block in the page is one of the examples', () => {
    const blocks = doc.match(/```ts\n/g) ?? [];
    expect(blocks).toHaveLength(2);
  });
});
