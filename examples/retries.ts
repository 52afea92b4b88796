import { createCallbackEngine } from 'callback-engine';

const engine = createCallbackEngine({
  node: 'ocr-1',
  secrets: ['change-me-to-a-long-random-secret'],
});

let calls = 0;
engine.anchor('ocr', {
  next: {
    // Fails twice (say the OCR farm is busy), then goes through.
    create: (cb) => {
      calls++;
      if (cb.attempt < 3) throw new Error(`farm busy (try ${cb.attempt})`);
      return { submittedOnTry: cb.attempt };
    },
  },
  // Every step of this anchor: up to 3 tries, waiting 0.1 s, then 0.2 s (backoff × factor).
  // By status instead: retry: { create: { attempts: 5 }, progress: false }.
  retry: { attempts: 3, backoff: 'PT0.1S', factor: 2, maxDelay: 'PT30S' },
});

const job = await engine.create('ocr', { data: { file: 'scan-1.pdf' } });
// create() answers once the first retry is scheduled; later reports wait behind the retries.
await engine.dispatch({ type: 'CALLBACK', callbackToken: job.token, callbackStatus: 'start' });
const now = await engine.get(job.token);
console.log(now.status, JSON.stringify(now.data), 'step ran', calls, 'times');
await engine.close();
