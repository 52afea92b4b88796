import { createCallbackEngine, InvalidDataError } from 'callback-engine';
import { z } from 'zod'; // or valibot, arktype, ...: anything implementing Standard Schema

const engine = createCallbackEngine({ node: 'shop-1', secrets: ['change-me-to-a-long-secret'] });

const order = engine.anchor('order', {
  data: z.object({ orderId: z.number().int(), currency: z.string().default('EUR') }),
  reports: {
    progress: z.object({ pct: z.number().min(0).max(100) }),
    '*': z.object({ by: z.string().optional() }), // every status without its own schema
  },
  next: {
    create: (cb) => console.log('ship order', cb.data.orderId, 'in', cb.data.currency),
    progress: (cb) => ({ lastPct: cb.report.pct }),
  },
});

const cb = await order.create({ data: { orderId: 7 } }); // currency defaults to 'EUR'
await order.report(cb.token, 'progress', { pct: 40 });
try {
  await engine.dispatch({
    type: 'CALLBACK',
    callbackToken: cb.token,
    callbackStatus: 'progress',
    callbackData: { pct: 140 },
  });
} catch (err) {
  if (!(err instanceof InvalidDataError)) throw err;
  console.log(err.code, JSON.stringify(err.issues));
}
console.log('data:', JSON.stringify((await engine.get(cb.token)).data));
await engine.close();
