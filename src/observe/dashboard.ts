/**
 * The dashboard's HTTP routes, mounted in front of the Dispatch Callback
 * Service:
 *
 * - `GET {base}`: the page;
 * - `GET {base}/events`: Server-Sent Events, one `view` event per published {@link MonitorView};
 * - `GET {base}/callbacks/{token or id}`: one callback's history (404 if not tracked);
 * - `GET {base}/diagram.svg`, `{base}/diagram.mmd`: the lifecycle diagram with current counts.
 *
 * @module
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { toMermaid, toSvg } from '../lifecycle/diagram.js';
import { dashboardPage } from './dashboard-page.js';
import type { Monitor } from './monitor.js';

/** Options of {@link createDashboard}. */
export interface DashboardOptions {
  /** Where the routes live. @default '/dashboard' */
  basePath?: string;
  /** Shown in the page header. @default 'callback-engine' */
  title?: string;
  /** Ms between SSE keep-alive comments. @default 15000 */
  keepAliveMs?: number;
}

/** A request handler that serves the dashboard routes and declines everything else. */
export type DashboardHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

/**
 * Creates the dashboard routes for a monitor.
 *
 * @returns a handler that answers dashboard requests and returns `true`, or returns `false`
 *   (and leaves the response alone) for any other path.
 */
export function createDashboard(
  monitor: Monitor,
  options: DashboardOptions = {},
): DashboardHandler {
  const base = (options.basePath ?? '/dashboard').replace(/\/+$/, '');
  const title = options.title ?? 'callback-engine';
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path !== base && !path.startsWith(`${base}/`)) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(
        res,
        405,
        'application/json',
        JSON.stringify({
          code: 'CBE_ERR_METHOD_NOT_ALLOWED',
          message: `${req.method} is not allowed here`,
        }),
      );
      return true;
    }
    const rest = path.slice(base.length);
    if (rest === '' || rest === '/') {
      send(
        res,
        200,
        'text/html; charset=utf-8',
        dashboardPage({ basePath: base, title, initial: monitor.tick() }),
      );
    } else if (rest === '/events') {
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      });
      const push = (view: unknown) => res.write(`event: view\ndata: ${JSON.stringify(view)}\n\n`);
      push(monitor.view());
      const unsubscribe = monitor.subscribe(push);
      const ping = setInterval(() => res.write(': keep-alive\n\n'), keepAliveMs);
      ping.unref();
      const stop = () => {
        clearInterval(ping);
        unsubscribe();
      };
      req.on('close', stop);
      res.on('error', stop);
    } else if (rest.startsWith('/callbacks/')) {
      let key: string;
      try {
        key = decodeURIComponent(rest.slice('/callbacks/'.length));
      } catch {
        send(
          res,
          400,
          'application/json',
          JSON.stringify({
            code: 'CBE_ERR_INVALID_MESSAGE',
            message: 'bad percent-encoding in the path',
          }),
        );
        return true;
      }
      monitor.history(key).then(
        (h) =>
          h
            ? send(res, 200, 'application/json', JSON.stringify(h))
            : send(
                res,
                404,
                'application/json',
                JSON.stringify({
                  code: 'CBE_ERR_NOT_FOUND',
                  message: 'no history for that token or id',
                }),
              ),
        () =>
          send(
            res,
            500,
            'application/json',
            JSON.stringify({ code: 'CBE_ERR_INTERNAL', message: 'history lookup failed' }),
          ),
      );
    } else if (rest === '/diagram.svg') {
      send(res, 200, 'image/svg+xml', toSvg(undefined, { counts: monitor.view().counts }));
    } else if (rest === '/diagram.mmd') {
      send(res, 200, 'text/plain; charset=utf-8', toMermaid());
    } else {
      send(
        res,
        404,
        'application/json',
        JSON.stringify({ code: 'CBE_ERR_NOT_FOUND', message: `no route ${path}` }),
      );
    }
    return true;
  };
}

/**
 * Puts the dashboard in front of a request handler (the Dispatch Callback
 * Service) and records how long each other request took in the monitor.
 */
export function withDashboard(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  monitor: Monitor,
  options?: DashboardOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const dashboard = createDashboard(monitor, options);
  return (req, res) => {
    if (dashboard(req, res)) return;
    const started = performance.now();
    res.on('finish', () => monitor.recordLatency(performance.now() - started));
    handler(req, res);
  };
}
