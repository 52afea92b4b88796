/**
 * `GET /metrics` in front of a request handler, behind the same auth as the dispatch routes.
 * Kept apart from `metrics.ts` so that serving metrics loads no `prom-client`: the framework
 * mounts (`callback-engine/fastify`, `callback-engine/express`) import this, and only a user who
 * created metrics (with prom-client installed) hands them any.
 *
 * @module
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CallbackEngine } from '../engine.js';
import { describe } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { adminAuth, carriedAuth, carryAuth } from '../http/gate.js';
import type { DispatchAuthOptions } from '../http/options.js';
import { errorReply, send } from '../http/respond.js';
import { checkKnownKeys } from '../keys.js';
import { adminRefusal, ownAuth } from './dashboard.js';

/**
 * What `GET /metrics` serves: an engine's metrics from `createMetrics()`, or anything that
 * scrapes to the Prometheus text exposition.
 */
export interface MetricsSource {
  /** The exposition's content type comes from the registry. */
  readonly register: { readonly contentType: string };
  /** The Prometheus text exposition. */
  scrape(): Promise<string>;
}

/** The engine each metrics object was created for, so `/metrics` takes that engine's auth. */
const engineOf = new WeakMap<MetricsSource, CallbackEngine>();

/** Records the engine `metrics` were created for (by `createMetrics`). */
export function rememberEngine(metrics: MetricsSource, engine: CallbackEngine): void {
  engineOf.set(metrics, engine);
}

/** The engine `metrics` were created for, when they come from `createMetrics`. */
export function metricsEngine(metrics: MetricsSource): CallbackEngine | undefined {
  return engineOf.get(metrics);
}

/** Options of {@link withMetrics}. */
export interface WithMetricsOptions {
  /** The route's path. @default '/metrics' */
  path?: string;
  /**
   * Credentials `GET /metrics` requires: the same shape as the dispatch handler's `auth`
   * (Prometheus sends a bearer token with `authorization.credentials`; a bearer token may also
   * come as the password of Basic auth). `false` serves the metrics without auth, deliberately.
   * @default the auth of the engine's dispatch handlers, whenever and wherever they are
   *   created; none when they have none. Refused at creation when they disagree.
   */
  auth?: DispatchAuthOptions | false;
}

/**
 * Serves `GET {path}` (default `/metrics`) with the metrics' exposition in front of a request
 * handler, behind the auth of the engine's dispatch handlers when they have any (a bearer token,
 * as Prometheus' `authorization` setting sends it, or HMAC-signed GETs), whatever order the
 * parts are created or wrapped in; every other request goes to `handler` (with `next`).
 *
 * @param handler - the dispatch handler, a handler that wraps it (`withDashboard`), or any handler.
 * @param metrics - from `createMetrics()`.
 * @param options - the path, and `auth`.
 * @returns a request handler; it carries the dispatch routes' auth for outer wrappers.
 * @throws {@link InvalidArgumentError} for a bad option, or when the auth to require is
 *   ambiguous (see {@link WithMetricsOptions.auth}) or unknowable (metrics not from
 *   `createMetrics` around a handler that is not a dispatch handler, and no `auth` option).
 */
export function withMetrics(
  handler: (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void,
  metrics: MetricsSource,
  options: WithMetricsOptions = {},
): (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void {
  checkKnownKeys('withMetrics options', options, ['path', 'auth']);
  const path = options.path ?? '/metrics';
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new InvalidArgumentError(
      `withMetrics options.path must start with "/" (got ${describe(path)})`,
    );
  const wrapped = carriedAuth(handler);
  const gate = adminAuth('withMetrics()', ownAuth(options.auth), engineOf.get(metrics), wrapped);
  return carryAuth((req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    if ((q < 0 ? url : url.slice(0, q)) !== path) return handler(req, res, next);
    // The gate first, for every method.
    const auth = gate();
    const refused =
      auth === undefined
        ? undefined
        : adminRefusal(auth, req, '/metrics', 'callback-engine metrics');
    if (refused) return send(res, errorReply(refused, 1));
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ code: 'CBE_ERR_METHOD_NOT_ALLOWED', message: `use GET on ${path}` }),
      );
      return;
    }
    metrics.scrape().then(
      (text) => {
        res.writeHead(200, {
          'content-type': metrics.register.contentType,
          'cache-control': 'no-store',
        });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => send(res, errorReply(err, 1)),
    );
  }, wrapped);
}
