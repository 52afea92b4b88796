import pg from 'pg';
import { createCallbackEngine } from 'callback-engine';
import { postgresStore } from 'callback-engine/postgres';

const databaseUrl = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `callbacks_example_${process.pid}`; // one cluster per schema

// Two replicas of one service: in one process here, one per process or host in production.
function replica(node: string) {
  const engine = createCallbackEngine({
    node, // distinct per replica
    secrets: ['change-me-to-a-long-random-secret'], // the same on every replica
    store: postgresStore({
      connectionString: databaseUrl,
      schema, // created and migrated on open
      // Forwarding between replicas: NATS if you run it, else over PostgreSQL itself.
      nats: process.env.NATS_URL ? { servers: process.env.NATS_URL } : undefined,
    }),
  });
  engine.anchor('payment', { next: { complete: (cb) => ({ paid: cb.report.amount }) } });
  return engine;
}
const a = replica('orders-a');
await a.ready(); // holds its share of the shards
const b = replica('orders-b');
await b.ready();

const cb = await a.create('payment', { data: { orderId: 7 } });
// The outside party's report may land on any replica; the callback's owner applies it.
const { outcome, answer } = await b.deliver({
  type: 'CALLBACK',
  callbackToken: cb.token,
  callbackStatus: 'complete',
  callbackData: { amount: 42 },
});
console.log(outcome, answer.status, JSON.stringify(answer.data));
console.log('read on a:', (await a.get(cb.token)).status);

await b.close(); // hands its shards over at once
await a.close();

// Clean up the example's schema.
const client = new pg.Client({ connectionString: databaseUrl });
await client.connect();
await client.query(`DROP SCHEMA ${schema} CASCADE`);
await client.end();
