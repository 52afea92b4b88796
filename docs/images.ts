/**
 * The pictures in the README, drawn by the code from a callback's history:
 * `npx tsx docs/images.ts` writes them to docs/images/. A test checks that the
 * committed files are what the code draws now.
 */

import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { anchorDiagram } from '../src/diagrams/anchor-diagram.js';
import { pathSvg } from '../src/observe/callback-path.js';
import { timelineSvg } from '../src/observe/timeline-svg.js';
import { resolveAnchor } from '../src/options/anchor.js';
import { resolveOptions } from '../src/options/engine.js';
import { OCR_DETAILS, OCR_HISTORY } from '../test/fixtures/history.js';

/** The OCR anchor of the README's pictures: the steps its callback's history shows. */
function ocrAnchor() {
  const engine = resolveOptions({ secrets: ['docs-only-secret-0123456789'] });
  return resolveAnchor(
    'ocr',
    {
      timeout: 'PT30S',
      heartbeat: 'PT20S',
      next: {
        create: function submitJob() {},
        start: function markStarted() {},
        progress: function bookPages() {},
        error: function alertOps() {},
      },
      retry: { progress: { attempts: 3, backoff: 'PT1S' } },
    },
    engine,
  );
}

/** Every picture, by file name under docs/images/. */
export function images(): Record<string, string> {
  return {
    'callback-path.svg': pathSvg(OCR_HISTORY, OCR_DETAILS),
    'callback-timeline.svg': timelineSvg(OCR_HISTORY, OCR_DETAILS, { width: 1100 }),
    'anchor-ocr.svg': anchorDiagram(ocrAnchor(), { format: 'svg' }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [name, svg] of Object.entries(images()))
    writeFileSync(new URL(`./images/${name}`, import.meta.url), svg);
}
