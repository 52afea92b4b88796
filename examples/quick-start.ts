import { createCallbackEngine, type CallbackEngine } from 'callback-engine';

const engine: CallbackEngine = createCallbackEngine({
  node: 'orders-1',
  secrets: ['change-me-to-a-long-random-secret'],
});

// A stand-in payment provider: it keeps the token it was handed and reports back later.
const paymentProvider = {
  charge(callbackToken: string): void {
    const report = (callbackStatus: 'accept' | 'progress' | 'complete', callbackData = {}) =>
      engine.dispatch({ type: 'CALLBACK', callbackToken, callbackStatus, callbackData });
    setTimeout(() => {
      void (async () => {
        await report('accept');
        await report('progress', { pct: 50 });
        await report('progress', { pct: 100 });
        await report('complete', { amount: 42 });
      })();
    }, 10);
  },
};

// An anchor says what runs when a callback of this kind changes status. Its type argument types
// the creation data and each status's report data: steps and create() are checked, no casts.
const payment = engine.anchor<{
  data: { orderId: number };
  reports: { progress: { pct: number }; complete: { amount: number } };
}>('payment', {
  next: {
    create: (cb) => paymentProvider.charge(cb.token), // hand the token to the outside party
    progress: (cb) => ({ lastPct: cb.report.pct }), // returned objects merge into the data
    complete: (cb) => ({ receipt: `R-${cb.data.orderId}` }),
    error: (cb) => console.error('payment failed:', cb.data.message),
  },
  timeout: 'PT10M',
});

const cb = await payment.create({ data: { orderId: 7 } });
console.log('created:', cb.status);

const final = await engine.wait(cb.token); // resolves once the callback is terminal
console.log('final:', final.status, JSON.stringify(final.data));

await engine.close();
