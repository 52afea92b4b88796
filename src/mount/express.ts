/**
 * callback-engine/express: the whole service as one Express 5 router. `express` is an optional
 * peer dependency: only this entry loads it.
 *
 * @packageDocumentation
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import type { CallbackEngine } from '../engine.js';
import {
  checkBaseUrl,
  checkEngine,
  isFixedPath,
  mountHandler,
  type MountOptions,
} from './mount.js';

export type { MountDashboardOptions, MountMetricsOptions, MountOptions } from './mount.js';

/**
 * Options of {@link callbackEngineRouter}: every option of the mount (`auth`, `dashboard`,
 * `metrics`, limits, `openApi`, `cloudEvents`).
 */
export type CallbackEngineRouterOptions = MountOptions;

/** What {@link callbackEngineRouter} returns: a handler to give to `app.use(path, ...)`. */
export type CallbackEngineRouter = (
  req: IncomingMessage,
  res: ServerResponse,
  next?: (err?: unknown) => void,
) => void;

const WHAT = 'callbackEngineRouter()';

/** What this entry reads of an Express application while it is mounted. */
interface MountedApp {
  mountpath?: unknown;
  parent?: MountedApp;
  on?(event: 'mount', listener: () => void): unknown;
}

/** The full, fixed path an app is mounted at (`''` at the root), or `undefined` if not fixed. */
function mountPathOf(app: MountedApp): string | undefined {
  let path = '';
  for (let a: MountedApp | undefined = app; a?.parent !== undefined; a = a.parent) {
    if (typeof a.mountpath !== 'string' || !isFixedPath(a.mountpath)) return undefined;
    path = a.mountpath.replace(/\/+$/, '') + path;
  }
  return path;
}

/**
 * An Express 5 router that serves every route of the service under the path it is mounted at:
 * reports (`POST /callbacks`, `GET /callbacks/{token}`, the callback URLs
 * `POST /callbacks/{token}/{status}`), CloudEvents (`POST /events`, structured, binary and batch),
 * the OpenAPI document (`GET /openapi.json`), and, when given, the dashboard (its page, API and
 * event stream, at `/dashboard`) and `GET /metrics`: all behind the one `auth`. Other paths go on
 * to the app's next handlers.
 *
 * Mount it before any body parser (`express.json()`): the routes read the raw body themselves,
 * once, so HMAC signatures verify. Behind a parser, a signed request is refused with a 401 that
 * says so; without auth the parsed body is used.
 *
 * Callback URLs come from the engine: create it with a `baseUrl` that ends with the mount path
 * (`https://shop.example/hooks` for `app.use('/hooks', ...)`). The router is an Express
 * sub-application, so it learns where it is mounted: `app.use()` throws when the `baseUrl` does
 * not end with the mount path (also when an enclosing app is mounted later), since the URLs the
 * engine hands out would miss it. Mount paths with parameters or patterns are not checked, nor
 * is a mount on an `express.Router()` (a router does not tell what it mounts where).
 *
 * @param engine - the engine the routes dispatch to.
 * @param options - `auth`, `dashboard`, `metrics`, limits, `openApi`, `cloudEvents`.
 * @returns the router, for `app.use(path, router)`.
 * @throws `InvalidArgumentError` for a missing engine or an unknown or invalid option; from
 *   `app.use()`, for a `baseUrl` that does not end with the mount path.
 * @example
 * ```ts
 * import express from 'express';
 * import { createCallbackEngine } from 'callback-engine';
 * import { callbackEngineRouter } from 'callback-engine/express';
 *
 * const engine = createCallbackEngine({
 *   secrets: [process.env.TOKEN_SECRET!],
 *   baseUrl: 'https://shop.example/hooks',
 * });
 * const app = express();
 * app.use('/hooks', callbackEngineRouter(engine, { auth: { hmac: { secret: process.env.HMAC_SECRET! } } }));
 * app.use(express.json()); // the rest of the app's parsers come after it
 * app.listen(8080);
 * ```
 */
export function callbackEngineRouter(
  engine: CallbackEngine,
  options: CallbackEngineRouterOptions = {},
): CallbackEngineRouter {
  checkEngine(WHAT, engine);
  // Express strips the mount path from req.url: the routes arrive without it.
  const { handler } = mountHandler(engine, options, { what: WHAT, pathInUrl: '' });
  const app = express();
  // A sub-app enables this header for itself; the app it is mounted in has already decided.
  app.disable('x-powered-by');
  app.use(handler);
  const mounted = app as unknown as MountedApp & { on(event: 'mount', l: () => void): unknown };
  const watched = new WeakSet<MountedApp>();
  const check = (): void => {
    const path = mountPathOf(mounted);
    if (path !== undefined) checkBaseUrl(engine, path, WHAT);
    // An enclosing app mounted later moves this one: check again then.
    for (let a = mounted.parent; a !== undefined; a = a.parent) {
      if (watched.has(a) || typeof a.on !== 'function') continue;
      watched.add(a);
      a.on('mount', check);
    }
  };
  mounted.on('mount', check);
  return app;
}
