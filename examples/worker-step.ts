import { createCallbackEngine, workerStep } from 'callback-engine';

const engine = createCallbackEngine({
  node: 'ocr-1',
  secrets: ['change-me-to-a-long-random-secret'],
  pool: { maxThreads: 2, maxQueue: 1024, close: 'drain' }, // started on the first worker step
});
engine.anchor('ocr', {
  next: {
    // A module file and an export. Ship JavaScript in production ('./steps/score.js').
    complete: workerStep(new URL('./steps/score.ts', import.meta.url), 'score', {
      retry: { attempts: 2 },
    }),
  },
});

const cb = await engine.create('ocr');
const answer = await engine.dispatch({
  type: 'CALLBACK',
  callbackToken: cb.token,
  callbackStatus: 'complete',
  callbackData: { text: 'the scanned page' },
});
console.log(answer.status, JSON.stringify(answer.data));
await engine.close();
