/**
 * The engine process of the crash demo (`npm start -- --crash`) and of the
 * crash tests: an engine on a SQLite file, served over HTTP, meant to be
 * SIGKILLed at any moment and restarted on the same file.
 *
 * Besides the Dispatch Callback Service routes it answers `POST /create`
 * (body: the creation data as JSON) with `{ token }` once the callback is
 * committed. Its `progress` step sometimes awaits a few milliseconds (and
 * `slowMs` milliseconds when the report's data carries it), so kills land
 * mid-step; it records nothing in memory: everything is in the store.
 *
 * It prints `OPENING` just before the engine opens its store, then
 * `READY <port> <readyMs> <active>` once `engine.ready()` resolved, where
 * `readyMs` is the time `ready()` took (the engine's own recovery) and
 * `active` the number of active callbacks it recovered. SIGTERM closes it.
 *
 * Run: node --import tsx src/demo/crash-server.ts --db FILE [--port N] [--synchronous full|normal]
 *
 * @module
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createCallbackEngine } from '../engine.js';
import { toError } from '../thrown.js';
import { createDispatchHandler } from '../http/handler.js';
import { sqliteStore } from '../store/sqlite.js';

/** Node name and secret of the crash server: fixed, so tokens minted before a kill verify after it. */
export const CRASH_NODE = 'crash-1';
const CRASH_SECRET = 'crash-demo-secret-0123456789abcdef';

/** Options of {@link startCrashServer}. */
export interface CrashServerOptions {
  /** The SQLite file. */
  path: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. @default 0 */
  port?: number;
  /** @default 'full' */
  synchronous?: 'full' | 'normal';
  /** Where the `OPENING` and `READY` lines go. @default stdout */
  log?: (line: string) => void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Starts the engine and its HTTP service.
 *
 * @param options - file, port, durability.
 * @returns once ready: the port and `close()`.
 */
export async function startCrashServer(
  options: CrashServerOptions,
): Promise<{ port: number; close(): Promise<void> }> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  log('OPENING');
  const opening = performance.now();
  const engine = createCallbackEngine({
    node: CRASH_NODE,
    secrets: [CRASH_SECRET],
    timeout: false,
    retention: true,
    store: sqliteStore({ path: options.path, synchronous: options.synchronous ?? 'full' }),
  });
  engine.anchor('job', {
    next: {
      // Nothing kept in memory; a few reports wait a little so kills land mid-step.
      progress: async (cb) => {
        const slow = cb.report.slowMs;
        if (typeof slow === 'number') await sleep(slow);
        else if (Math.random() < 0.25) await sleep(1 + Math.floor(Math.random() * 4));
      },
    },
  });
  const dispatch = createDispatchHandler(engine);
  const create = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let status = 200;
    let body: unknown;
    try {
      const data = text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {};
      body = { token: (await engine.create('job', { data })).token };
    } catch (err) {
      const e = toError(err) as Error & { statusCode?: number; code?: string };
      status = e.statusCode ?? 500;
      body = { code: e.code, message: e.message };
    }
    const json = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(json),
    });
    res.end(json);
  };
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/create') void create(req, res);
    else dispatch(req, res);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  await engine.ready();
  const readyMs = performance.now() - opening;
  const { port } = server.address() as AddressInfo;
  log(`READY ${port} ${readyMs.toFixed(1)} ${engine.stats().active}`);
  return {
    port,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await engine.close();
    },
  };
}

/** Runs the server from the command line (see the module comment). */
export async function crashServerMain(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      db: { type: 'string' },
      port: { type: 'string', default: '0' },
      synchronous: { type: 'string', default: 'full' },
    },
  });
  const path = values.db ?? process.env.CRASH_DB;
  if (!path) throw new Error('crash-server needs --db FILE (or CRASH_DB)');
  const sync = values.synchronous === 'normal' ? 'normal' : 'full';
  const server = await startCrashServer({ path, port: Number(values.port), synchronous: sync });
  process.once('SIGTERM', () => {
    void server.close().then(() => process.exit(0));
  });
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  crashServerMain(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${toError(err).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
