import { createCallbackEngine, createSimulatedClock } from 'callback-engine';

// A simulated clock moves only when told to: the example skips six minutes at once.
// Leave `clock` out to use real time.
const clock = createSimulatedClock();
const engine = createCallbackEngine({
  node: 'ocr-1',
  secrets: ['change-me-to-a-long-random-secret'],
  clock,
});

engine.anchor('ocr', {
  timeout: 'PT30M', // the deadline, counted from creation
  heartbeat: 'PT5M', // while active, a report must arrive at least every 5 minutes
  retention: 'P7D', // keep the record a week after it ends
  next: { timeout: (cb) => console.log('timed out:', cb.data.reason) },
});

const job = await engine.create('ocr', { data: { file: 'scan-1.pdf' } });
await engine.dispatch({ type: 'CALLBACK', callbackToken: job.token, callbackStatus: 'start' });
clock.advance(6 * 60_000); // six minutes without a report
const final = await engine.wait(job.token);
console.log('final:', final.status);

// One callback may have its own deadline: a duration, a date, or false for none.
const urgent = await engine.create('ocr', { timeout: 'PT1M', data: { file: 'scan-2.pdf' } });
console.log('urgent:', urgent.status);
await engine.close();
