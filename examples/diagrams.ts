import { writeFileSync } from 'node:fs';
import { createCallbackEngine } from 'callback-engine';
import { pathMermaid, pathSvg, timelineSvg, timelineText } from 'callback-engine/dashboard';

const engine = createCallbackEngine({
  node: 'ocr-1',
  secrets: ['change-me-to-a-long-random-secret'],
});
engine.anchor('ocr', {
  timeout: 'PT30S',
  next: { start: () => ({ started: true }), complete: (cb) => ({ pages: cb.report.pages }) },
  retry: { attempts: 3, backoff: 'PT1S' },
});

// What the anchor runs on each status, on the lifecycle: 'mermaid', 'svg' or 'json'.
writeFileSync('ocr-anchor.svg', engine.diagram('ocr', { format: 'svg' }));

const cb = await engine.create('ocr', { data: { file: 'scan-1.pdf' } });
for (const [callbackStatus, callbackData] of [
  ['start', {}],
  ['accept', {}], // late: changes nothing, and the history says so
  ['complete', { pages: 12 }],
] as const) {
  await engine.dispatch({
    type: 'CALLBACK',
    callbackToken: cb.token,
    callbackStatus,
    callbackData,
  });
}

// One callback's way, from its history: its path on the lifecycle and its timeline.
const { entries } = await engine.history(cb.id, { limit: 1000 });
const details = await engine.details(cb.id);
writeFileSync('ocr-path.svg', pathSvg(entries, details));
writeFileSync('ocr-timeline.svg', timelineSvg(entries, details));
writeFileSync('ocr-path.mmd', pathMermaid(entries, details)); // Mermaid, to paste into a ticket
console.log(timelineText(entries, details));
await engine.close();
