/**
 * callback-engine/fastify: the whole service as one Fastify plugin. `fastify` is an optional
 * peer dependency, used here for its types only: this entry loads nothing of it.
 *
 * @packageDocumentation
 */

import type { ServerResponse } from 'node:http';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import type { CallbackEngine } from '../engine.js';
import { InvalidArgumentError } from '../errors.js';
import { toError } from '../thrown.js';
import {
  checkBaseUrl,
  checkEngine,
  isFixedPath,
  mountHandler,
  type MountOptions,
} from './mount.js';
import { pathOf } from '../http/router.js';

export type { MountDashboardOptions, MountMetricsOptions, MountOptions } from './mount.js';

/** Options of the {@link callbackEngine} plugin: the engine, and every option of the mount. */
export interface CallbackEnginePluginOptions extends MountOptions {
  /** The engine the routes dispatch to. */
  engine: CallbackEngine;
  /**
   * Fastify's own option: the path every route is mounted under, e.g. `/hooks`. The engine's
   * `baseUrl` must end with the full prefix (this one and any of enclosing plugins).
   * @default '' (the root)
   */
  prefix?: string;
}

/** The plugin's name in Fastify's own messages (its display name). */
const NAME = 'callback-engine';
/** How the plugin's messages name it. */
const WHAT = 'the callback-engine Fastify plugin';
/** Fastify's own register options, passed to the plugin along with its options. */
const FASTIFY_KEYS = new Set(['prefix', 'logLevel', 'logSerializers']);

/**
 * A Fastify plugin that mounts every route of the service under the register `prefix`: reports
 * (`POST /callbacks`, `GET /callbacks/{token}`, the callback URLs
 * `POST /callbacks/{token}/{status}`), CloudEvents (`POST /events`, structured, binary and batch),
 * the OpenAPI document (`GET /openapi.json`), and, when given, the dashboard (its page, API and
 * event stream, at `/dashboard`) and `GET /metrics`: all behind the one `auth`.
 *
 * Inside its own scope (it is deliberately not wrapped with `fastify-plugin`) it replaces
 * Fastify's body parsers with one that leaves the body unread: the routes read the raw bytes
 * themselves, once, so HMAC signatures verify and nothing is parsed twice. The rest of the app
 * keeps its parsers. It registers only its own routes, so other routes may share the prefix.
 *
 * Callback URLs come from the engine: create it with a `baseUrl` that ends with the prefix
 * (`https://shop.example/hooks` for `prefix: '/hooks'`); the plugin refuses to register
 * otherwise, since the URLs the engine hands out would miss the prefix. The OpenAPI document
 * lists the same URLs.
 *
 * `app.close()` ends the dashboard's open event streams rather than wait for their clients.
 *
 * @param instance - the Fastify instance (scope) it is registered in.
 * @param options - `engine`, Fastify's `prefix`, and the mount options: `auth`, `dashboard`,
 *   `metrics`, limits, `openApi`, `cloudEvents`.
 * @throws {@link InvalidArgumentError} (the registration fails: `register`, `app.ready()` and
 *   `listen()` reject) for a missing engine, an unknown or invalid option, a prefix with
 *   parameters, or a `baseUrl` that does not end with the prefix.
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * import { createCallbackEngine } from 'callback-engine';
 * import { callbackEngine } from 'callback-engine/fastify';
 *
 * const engine = createCallbackEngine({
 *   secrets: [process.env.TOKEN_SECRET!],
 *   baseUrl: 'https://shop.example/hooks',
 * });
 * const app = Fastify();
 * await app.register(callbackEngine, {
 *   engine,
 *   prefix: '/hooks',
 *   auth: { hmac: { secret: process.env.HMAC_SECRET! } },
 * });
 * await app.listen({ port: 8080 });
 * ```
 */
export const callbackEngine: FastifyPluginCallback<CallbackEnginePluginOptions> = (
  instance,
  options,
  done,
) => {
  try {
    register(instance, options);
  } catch (err) {
    done(toError(err));
    return;
  }
  done();
};

function register(instance: Parameters<typeof callbackEngine>[0], options: unknown): void {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(`${WHAT} needs options with an engine`);
  const mount: Record<string, unknown> = {};
  let engine: unknown;
  for (const [key, value] of Object.entries(options)) {
    if (key === 'engine') engine = value;
    else if (!FASTIFY_KEYS.has(key)) mount[key] = value;
  }
  checkEngine(`${WHAT} (options.engine)`, engine);
  const prefix = instance.prefix.replace(/\/+$/, '');
  if (!isFixedPath(prefix))
    throw new InvalidArgumentError(
      `${WHAT} needs a fixed prefix, without parameters or wildcards (got ${JSON.stringify(prefix)})`,
    );
  checkBaseUrl(engine, prefix, WHAT);
  const { handler, routes, streams } = mountHandler(engine, mount, {
    what: WHAT,
    pathInUrl: prefix,
  });
  // This scope only: every content type is accepted and left unread for the handler.
  instance.removeAllContentTypeParsers();
  instance.addContentTypeParser('*', (_request, _payload, parsed) => parsed(null));
  // Event streams stay open until their client leaves: app.close() ends them rather than wait.
  const streamPaths = new Set(streams.map((path) => prefix + path));
  const open = new Set<ServerResponse>();
  const serve = (request: FastifyRequest, reply: FastifyReply): void => {
    reply.hijack();
    const res = reply.raw;
    if (streamPaths.has(pathOf(request.raw.url))) {
      open.add(res);
      res.once('close', () => open.delete(res));
    }
    handler(request.raw, res);
  };
  for (const url of routes) instance.all(url, serve);
  instance.addHook('preClose', (done) => {
    for (const res of open) res.destroy();
    done();
  });
}

Object.defineProperty(callbackEngine, Symbol.for('fastify.display-name'), { value: NAME });

export default callbackEngine;
