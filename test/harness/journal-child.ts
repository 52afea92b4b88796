/**
 * The engine process of the journal's crash tests: an engine on a SQLite file or a PostgreSQL
 * schema, served over HTTP, whose steps record every run in a side file (one JSON line each,
 * appended synchronously, so a run is counted even if the process dies right after) and kill
 * their own process with SIGKILL on request, inside the step.
 *
 * Run: node --import tsx test/harness/journal-child.ts --runs FILE
 *        (--sqlite FILE | --pg SCHEMA) [--node NAME] [--port N] [--close-timeout PT1S]
 *        [--ttl MS] [--nats URL]
 * Prints `READY <port>` once `engine.ready()` resolved. SIGTERM closes the engine gracefully.
 *
 * HTTP, besides the dispatch routes (`POST /callbacks` and the rest):
 * - `POST /create` `{ anchor?, data?, idempotencyKey?, parentToken?, timeout? }` → the callback;
 * - `POST /cancel` `{ token }` → the answer (the caller's cancel);
 * - `GET /history/{id}` → every history entry of the callback;
 * - `GET /get/{token}` → the callback's answer.
 *
 * A step kills the process on its first run when the report's data has `kill` equal to the
 * step's status, or the callback's creation data has `killOn` equal to it. A report with
 * `hangMs` makes its step wait that long first (ignoring its abort signal).
 */

import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createCallbackEngine, type StepInput } from '../../src/index.js';
import { createDispatchHandler } from '../../src/http/index.js';
import { sqliteStore } from '../../src/store/sqlite.js';
import { postgresStore } from '../../src/postgres.js';

export const JOURNAL_SECRET = 'journal-crash-secret-0123456789abcdef';

const { values } = parseArgs({
  options: {
    runs: { type: 'string' },
    sqlite: { type: 'string' },
    pg: { type: 'string' },
    node: { type: 'string', default: 'j1' },
    port: { type: 'string', default: '0' },
    'close-timeout': { type: 'string', default: 'PT10S' },
    ttl: { type: 'string', default: '2000' },
    nats: { type: 'string' },
  },
});
const runsFile = values.runs!;
const PG = process.env.CBE_PG ?? process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A step's run as the side file records it. */
export interface StepRun {
  id: string;
  status: string;
  seq: number | null;
  attempt: number;
  pid: number;
  node: string;
}

const keyOf = (r: { id: string; status: string; seq: number | null }) =>
  `${r.id}|${r.status}|${r.seq ?? ''}`;

/** Runs of this step before this one (read from the side file: several processes write it). */
function runsBefore(key: string): number {
  if (!existsSync(runsFile)) return 0;
  let n = 0;
  for (const line of readFileSync(runsFile, 'utf8').split('\n'))
    if (line && keyOf(JSON.parse(line) as StepRun) === key) n++;
  return n;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function step(cb: StepInput): Promise<Record<string, unknown>> {
  const seq = typeof cb.report.seq === 'number' ? cb.report.seq : null;
  const run: StepRun = {
    id: cb.id,
    status: cb.status,
    seq,
    attempt: cb.attempt,
    pid: process.pid,
    node: values.node,
  };
  const wantsKill = cb.report.kill === cb.status || cb.data.killOn === cb.status;
  const before = wantsKill ? runsBefore(keyOf(run)) : 0;
  appendFileSync(runsFile, `${JSON.stringify(run)}\n`);
  if (typeof cb.report.hangMs === 'number') await sleep(cb.report.hangMs);
  if (wantsKill && before === 0) process.kill(process.pid, 'SIGKILL');
  return { [`${cb.status}Seen`]: seq ?? true };
}

const store = values.sqlite
  ? sqliteStore({ path: values.sqlite })
  : postgresStore({
      connectionString: PG,
      schema: values.pg!,
      shards: 8,
      leaseTtl: Number(values.ttl),
      renewInterval: Math.floor(Number(values.ttl) / 4),
      ...(values.nats ? { nats: { servers: values.nats } } : {}),
    });
const engine = createCallbackEngine({
  node: values.node,
  secrets: [JOURNAL_SECRET],
  retention: true,
  closeTimeout: values['close-timeout'],
  store,
});
engine.anchor('job', {
  next: {
    create: step,
    progress: step,
    complete: step,
    cancel: step,
    timeout: step,
    orphan: step,
    error: step,
  },
});

const dispatch = createDispatchHandler(engine);

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const json = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(json),
  });
  res.end(json);
}

async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '';
  try {
    if (req.method === 'POST' && url === '/create') {
      const b = await body(req);
      const created = await engine.create(typeof b.anchor === 'string' ? b.anchor : 'job', {
        ...(b.data !== undefined ? { data: b.data as Record<string, unknown> } : {}),
        ...(typeof b.idempotencyKey === 'string' ? { idempotencyKey: b.idempotencyKey } : {}),
        ...(typeof b.parentToken === 'string' ? { parentToken: b.parentToken } : {}),
        ...(b.timeout !== undefined
          ? { timeout: b.timeout as string | false }
          : { timeout: false }),
      });
      return send(res, 200, {
        ...(created as unknown as { toJSON(): object }).toJSON(),
        id: created.id,
      });
    }
    if (req.method === 'POST' && url === '/cancel') {
      const b = await body(req);
      return send(res, 200, await engine.cancel(String(b.token), { by: 'caller' }));
    }
    if (req.method === 'GET' && url.startsWith('/history/')) {
      const id = decodeURIComponent(url.slice('/history/'.length));
      const entries = [];
      for (let page = await engine.history(id, { limit: 1000 }); ;) {
        entries.push(...page.entries);
        if (page.cursor === undefined) break;
        page = await engine.history(id, { limit: 1000, cursor: page.cursor });
      }
      return send(res, 200, entries);
    }
    if (req.method === 'GET' && url.startsWith('/get/'))
      return send(res, 200, await engine.get(decodeURIComponent(url.slice('/get/'.length))));
  } catch (err) {
    const e = err as Error & { statusCode?: number; code?: string };
    return send(res, e.statusCode ?? 500, { code: e.code, message: e.message });
  }
  dispatch(req, res);
}

const server = createServer((req, res) => void route(req, res));
await new Promise<void>((resolve) => server.listen(Number(values.port), '127.0.0.1', resolve));
await engine.ready();
process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`);
process.once('SIGTERM', () => {
  // No new connections; requests in flight are answered (close() lets steps finish or cuts
  // them off after closeTimeout), then the process exits.
  server.close();
  void engine.close().then(
    () => setTimeout(() => process.exit(0), 100),
    () => process.exit(1),
  );
});
