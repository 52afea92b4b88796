import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { images } from '../docs/images.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const visualization = readFileSync(new URL('../docs/visualization.md', import.meta.url), 'utf8');

describe('the README shows pictures the code draws', () => {
  it('each picture under docs/images is what docs/images.ts draws now', () => {
    const drawn = images();
    expect(Object.keys(drawn).sort()).toEqual([
      'anchor-ocr.svg',
      'callback-path.svg',
      'callback-timeline.svg',
    ]);
    for (const [name, svg] of Object.entries(drawn)) {
      const committed = readFileSync(new URL(`../docs/images/${name}`, import.meta.url), 'utf8');
      // Run `npx tsx docs/images.ts` after changing how pictures are drawn.
      expect(committed, name).toBe(svg);
      // docs/visualization.md shows every picture.
      expect(visualization, name).toContain(`(images/${name})`);
    }
    // The path: an ignored accept, two failed tries, the deadline.
    expect(drawn['callback-path.svg']).toContain('ignored accept +1.9 s');
    expect(drawn['callback-timeline.svg']).toContain('wait 2 s → try 3');
  });

  it('the README shows one real path picture and one timeline', () => {
    expect(readme).toContain('(docs/images/callback-path.svg)');
    expect(readme).toContain('(docs/images/callback-timeline.svg)');
  });

  it('the Stately inspector recipe is examples/inspect-stately.ts, for Node', () => {
    const file = readFileSync(new URL('../examples/inspect-stately.ts', import.meta.url), 'utf8');
    const m = /<!-- example: inspect-stately -->\s*```ts\n([\s\S]*?)```/.exec(visualization);
    expect(m?.[1]?.trim()).toBe(file.trim());
    expect(visualization).toContain('createWebSocketInspector');
    expect(visualization).not.toMatch(/`createBrowserInspector\(\)\.inspect`/);
  });
});
