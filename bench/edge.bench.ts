/**
 * What issue 13's edge features cost, as ratios in one run.
 *
 * 1. Schemas at the edge: in-process `progress` reports to 1,000 pending callbacks,
 *    (a) floor: Map.get + zod `safeParse` + shallow merge (what a hand-written service does);
 *    (b) engine.dispatch() on an anchor without a schema;
 *    (c) naive: the same anchor, the step validates with `schema.parse` itself (the report is
 *        already applied when it fails);
 *    (d) engine.dispatch() on an anchor with `reports: { progress: zodSchema }`.
 * 2. The channel hop over HTTP: 32 reports in flight (closed loop), each a `POST /callbacks`
 *    (a) floor: a bare node:http JSON server that parses the body and answers;
 *    (b) the origin engine's HTTP service, directly;
 *    (c) a relaying engine's service with a wrapped token, forwarding to the origin.
 *
 * Run: npx tsx bench/edge.bench.ts [--time 1500]
 */
import { createServer, type Server } from 'node:http';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createCallbackEngine, type CallbackEngine } from '../src/index.js';
import { serve } from '../src/http/index.js';
import { check, compare, printRows, writeResults, writeResultsSection } from './lib.js';

const { values } = parseArgs({ options: { time: { type: 'string', default: '1500' } } });
const TIME = Number(values.time);
const N = 1000;
const BATCH = 100;

const engineOf = (node: string, baseUrl?: string): CallbackEngine =>
  createCallbackEngine({
    node,
    secrets: ['bench-secret-0123456789'],
    timeout: false,
    retention: true,
    ...(baseUrl ? { baseUrl } : {}),
  });

// ---- 1. schemas ------------------------------------------------------------------------------
const progress = z.object({
  pct: z.number().min(0).max(100),
  note: z.string().max(200).optional(),
});
const engine = engineOf('bench');
engine.anchor('plain');
engine.anchor('naive', {
  next: {
    progress: (cb) => {
      progress.parse(cb.report);
    },
  },
});
engine.anchor('schema', { reports: { progress } });
const tokens: Record<string, string[]> = { plain: [], naive: [], schema: [] };
for (const anchor of Object.keys(tokens))
  for (let i = 0; i < N; i++) tokens[anchor]!.push((await engine.create(anchor)).token);
const plain = new Map<string, { data: Record<string, unknown> }>();
for (let i = 0; i < N; i++) plain.set(`id${i}`, { data: {} });

let k = 0;
const floor = () => {
  for (let b = 0; b < BATCH; b++) {
    const rec = plain.get(`id${k++ % N}`)!;
    const r = progress.safeParse({ pct: k % 100, note: 'ok' });
    if (r.success) rec.data = { ...rec.data, ...r.data };
  }
};
const dispatchTo = (anchor: string) => () => {
  const ps: Promise<unknown>[] = [];
  for (let b = 0; b < BATCH; b++) {
    ps.push(
      engine.dispatch({
        type: 'CALLBACK',
        callbackToken: tokens[anchor]![k++ % N]!,
        callbackStatus: 'progress',
        callbackData: { pct: k % 100, note: 'ok' },
      }),
    );
  }
  return Promise.all(ps);
};
await dispatchTo('schema')();
check((await engine.get(tokens.schema![0]!)).status === 'progress', 'schema anchor applied');
const bad = await engine
  .dispatch({
    type: 'CALLBACK',
    callbackToken: tokens.schema![0]!,
    callbackStatus: 'progress',
    callbackData: { pct: 500 },
  })
  .then(
    () => 'applied',
    (err: { code?: string }) => err.code,
  );
check(bad === 'CBE_ERR_INVALID_DATA', 'a bad report is refused');
const schemaRows = await compare(
  'progress report, 1,000 pending, with and without a zod schema',
  [
    { name: 'floor: Map + zod safeParse + merge', batch: BATCH, fn: floor },
    { name: 'engine.dispatch(), no schema', batch: BATCH, fn: dispatchTo('plain') },
    { name: 'naive: zod parse inside the step', batch: BATCH, fn: dispatchTo('naive') },
    { name: 'engine.dispatch(), reports schema', batch: BATCH, fn: dispatchTo('schema') },
  ],
  { timeMs: TIME },
);
printRows(schemaRows);
await engine.close();

// ---- 2. relay hop over HTTP ------------------------------------------------------------------
const listen = (s: Server) =>
  new Promise<string>((resolve) =>
    s.listen(0, '127.0.0.1', () =>
      resolve(`http://127.0.0.1:${(s.address() as { port: number }).port}`),
    ),
  );
const bare = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const m = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
    const body = JSON.stringify({
      status: 'progress',
      token: m.callbackToken,
      data: m.callbackData,
    });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  });
});
const bareUrl = await listen(bare);
const origin = engineOf('origin');
origin.anchor('job');
const originService = await serve(origin);
const relay = engineOf('relay');
const relayService = await serve(relay);
const HOPS = 64;
const originTokens: string[] = [];
const wrapped: string[] = [];
for (let i = 0; i < HOPS; i++) {
  const t = (await origin.create('job')).token;
  originTokens.push(t);
  wrapped.push(relay.relay(t, { to: originService.url }));
}
const IN_FLIGHT = 32;
const post = (url: string, token: string, i: number) =>
  fetch(`${url}/callbacks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      type: 'CALLBACK',
      callbackToken: token,
      callbackStatus: 'progress',
      callbackData: { i },
    }),
  }).then(async (r) => {
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
  });
let j = 0;
const loop = (url: string, list: string[]) => () =>
  Promise.all(
    Array.from({ length: IN_FLIGHT }, () => {
      const n = j++;
      return post(url, list[n % HOPS]!, n);
    }),
  );
await loop(relayService.url, wrapped)();
check(
  (await origin.get(originTokens[0]!)).status === 'progress',
  'a report through the relay reached the origin',
);
const hopRows = await compare(
  `POST /callbacks progress, ${IN_FLIGHT} in flight, ${HOPS} callbacks`,
  [
    { name: 'floor: bare node:http JSON', batch: IN_FLIGHT, fn: loop(bareUrl, originTokens) },
    { name: 'origin service, direct', batch: IN_FLIGHT, fn: loop(originService.url, originTokens) },
    {
      name: 'relay service → origin (wrapped token)',
      batch: IN_FLIGHT,
      fn: loop(relayService.url, wrapped),
    },
  ],
  { timeMs: TIME * 2 },
);
printRows(hopRows);
await relayService.close();
await originService.close();
await relay.close();
await origin.close();
bare.close();

const fmt = (rows: typeof schemaRows, ref: string) =>
  rows.map((r) => {
    const base = rows.find((x) => x.name.startsWith(ref))!;
    return `| ${r.name} | ${Math.round(r.opsPerSec).toLocaleString('en-US')} | ${(r.opsPerSec / rows[0]!.opsPerSec).toFixed(2)}× | ${(r.opsPerSec / base.opsPerSec).toFixed(2)}× | ±${r.rme.toFixed(1)}% |`;
  });
writeResults('bench/results-edge.json', 'edge', { schema: schemaRows, hop: hopRows });
writeResultsSection(
  'edge',
  'Schemas at the edge and the channel hop (issue 13)',
  'bench/edge.bench.ts',
  [
    '### Progress reports in process, 1,000 pending: the cost of a `reports` schema (zod)',
    '',
    '| alternative | reports/s | vs floor | vs engine without schema | rme |',
    '|---|---:|---:|---:|---:|',
    ...fmt(schemaRows, 'engine.dispatch(), no schema'),
    '',
    `### POST /callbacks over HTTP, ${IN_FLIGHT} in flight (one process: client, servers): what one relay hop costs`,
    '',
    '| alternative | reports/s | vs floor | vs origin direct | rme |',
    '|---|---:|---:|---:|---:|',
    ...fmt(hopRows, 'origin service, direct'),
  ],
);
