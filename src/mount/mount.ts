/**
 * What the framework mounts (`callback-engine/fastify`, `callback-engine/express`) share: their
 * options, one request handler for every route of the service under a mount path (the dispatch
 * routes, the OpenAPI document, and optionally the dashboard and `/metrics`, all behind one
 * auth), and the check that the engine's `baseUrl` ends with that mount path.
 *
 * It loads no framework and no `prom-client`: each framework lives only in its own entry.
 *
 * @module
 */

import type { CallbackEngine } from '../engine.js';
import { describe } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import { withDashboard, type DashboardOptions } from '../observe/dashboard.js';
import {
  metricsEngine,
  withMetrics,
  type MetricsSource,
  type WithMetricsOptions,
} from '../observe/metrics-route.js';
import type { Monitor } from '../observe/monitor.js';
import { createDispatchHandler, type DispatchHandler } from '../http/handler.js';
import { HANDLER_OPTION_KEYS, type DispatchHandlerOptions } from '../http/options.js';

/** The dashboard of a mount: its monitor, and the dashboard's options. */
export interface MountDashboardOptions extends DashboardOptions {
  /** The live view to serve, from `createMonitor(engine)` (`callback-engine/dashboard`). */
  monitor: Monitor;
}

/** `/metrics` of a mount: the engine's metrics, and the route's options. */
export interface MountMetricsOptions extends WithMetricsOptions {
  /** The engine's metrics, from `createMetrics(engine)` (`callback-engine/metrics`). */
  metrics: MetricsSource;
}

/**
 * Options of a framework mount: every option of `createDispatchHandler` but `basePath` (the
 * routes live where the framework mounts them), and the optional dashboard and `/metrics`.
 */
export interface MountOptions extends Omit<DispatchHandlerOptions, 'basePath'> {
  /**
   * Serve the dashboard (page, JSON API, event stream) under the mount, at `/dashboard` or its
   * `basePath` (relative to the mount), behind the mount's `auth` unless given its own.
   * @default none
   */
  dashboard?: Monitor | MountDashboardOptions;
  /**
   * Serve `GET /metrics` (or its `path`, relative to the mount) behind the mount's `auth` unless
   * given its own.
   * @default none
   */
  metrics?: MetricsSource | MountMetricsOptions;
}

/** Every key of {@link MountOptions}, for the unknown-key check. */
export const MOUNT_OPTION_KEYS: readonly string[] = Object.freeze([
  ...HANDLER_OPTION_KEYS.filter((k) => k !== 'basePath'),
  'dashboard',
  'metrics',
]);

/** A mount's handler, and the routes (relative to the mount) it answers. */
export interface Mounted {
  /** Serves every route of the mount; paths that are none of them go to `next` (or get a 404). */
  readonly handler: DispatchHandler;
  /**
   * The route patterns to hand the framework, relative to the mount: `*` stands for the rest of
   * a path.
   */
  readonly routes: readonly string[];
  /** The routes (relative to the mount) that answer with a stream kept open: the dashboard's events. */
  readonly streams: readonly string[];
}

/** Where a mount's routes appear in `req.url`, and what its messages call it. */
export interface MountSite {
  /** How messages name the mount, e.g. `callbackEngineRouter()`. */
  readonly what: string;
  /**
   * The prefix the routes carry in `req.url` when they arrive: the mount path where the
   * framework leaves it in the URL (Fastify), `''` where it strips it (Express).
   */
  readonly pathInUrl: string;
}

const DYNAMIC = /[:*?(){}[\]]/;

/**
 * Throws unless `value` looks like an engine from `createCallbackEngine()`.
 *
 * @throws {@link InvalidArgumentError} naming the mount.
 */
export function checkEngine(what: string, value: unknown): asserts value is CallbackEngine {
  const e = value as Partial<Record<'deliver' | 'get' | 'subscribe' | 'callbackUrl', unknown>>;
  if (
    typeof e !== 'object' ||
    e === null ||
    typeof e.deliver !== 'function' ||
    typeof e.get !== 'function' ||
    typeof e.subscribe !== 'function' ||
    typeof e.callbackUrl !== 'function'
  )
    throw new InvalidArgumentError(
      `${what} needs an engine from createCallbackEngine() (got ${describe(value)})`,
    );
}

/** Whether a mount path is a fixed path (no parameters, wildcards or patterns). */
export function isFixedPath(path: string): boolean {
  return !DYNAMIC.test(path);
}

/**
 * Checks that the engine's `baseUrl` ends with the path the service is mounted at, so the callback
 * URLs it hands out (`engine.callbackUrl(token)`) and the OpenAPI server URL reach the mount. A
 * `baseUrl` with more in front (`https://example.com/shop/hooks` for a mount at `/hooks`, behind
 * a proxy that adds `/shop`) passes; an engine without `baseUrl` hands out no callback URLs.
 *
 * @param mountPath - the full mount path, e.g. `/hooks`; `''` at the root.
 * @throws {@link InvalidArgumentError} naming the mount path, the `baseUrl` and the fix.
 */
export function checkBaseUrl(engine: CallbackEngine, mountPath: string, what: string): void {
  const base = engine.baseUrl;
  if (base === undefined || mountPath === '') return;
  const url = new URL(base);
  const path = url.pathname.replace(/\/+$/, '');
  if (path.endsWith(mountPath)) return;
  throw new InvalidArgumentError(
    `${what} is mounted at ${JSON.stringify(mountPath)}, but the engine's baseUrl ${JSON.stringify(base)} does not end with it: the callback URLs it hands out (engine.callbackUrl) and the OpenAPI server URL would miss the mount path. Create the engine with a baseUrl that ends with the mount path, e.g. ${JSON.stringify(url.origin + path + mountPath)}`,
  );
}

/** A relative path option of a mount part: starts with `/`, is fixed, has no trailing slash. */
function relativePath(what: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !/^(\/[^/?#\s]+)+$/.test(value) || !isFixedPath(value))
    throw new InvalidArgumentError(
      `${what} must be a fixed path relative to the mount such as ${JSON.stringify(fallback)} (got ${describe(value)})`,
    );
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The monitor and dashboard options of `options.dashboard`. */
function dashboardOf(
  what: string,
  engine: CallbackEngine,
  value: unknown,
): { monitor: Monitor; options: DashboardOptions } {
  if (!isObject(value))
    throw new InvalidArgumentError(
      `${what} options.dashboard must be a monitor from createMonitor(engine), or { monitor, ...dashboard options } (got ${describe(value)})`,
    );
  const { monitor, ...options } = ('monitor' in value
    ? value
    : { monitor: value }) as unknown as MountDashboardOptions;
  if (!isObject(monitor) || typeof monitor.view !== 'function')
    throw new InvalidArgumentError(
      `${what} options.dashboard.monitor must be a monitor from createMonitor(engine) (got ${describe(monitor)})`,
    );
  if (monitor.engine !== engine)
    throw new InvalidArgumentError(
      `${what} options.dashboard: the monitor watches another engine than the one mounted`,
    );
  return { monitor, options };
}

/** The metrics and route options of `options.metrics`. */
function metricsOf(
  what: string,
  engine: CallbackEngine,
  value: unknown,
): { metrics: MetricsSource; options: WithMetricsOptions } {
  const isSource = (v: unknown): v is MetricsSource =>
    isObject(v) && typeof v.scrape === 'function' && isObject(v.register);
  if (!isObject(value) || !(isSource(value) || 'metrics' in value))
    throw new InvalidArgumentError(
      `${what} options.metrics must be metrics from createMetrics(engine), or { metrics, path?, auth? } (got ${describe(value)})`,
    );
  const { metrics, ...options } = (isSource(value)
    ? { metrics: value }
    : value) as unknown as MountMetricsOptions;
  if (!isSource(metrics))
    throw new InvalidArgumentError(
      `${what} options.metrics.metrics must be metrics from createMetrics(engine) (got ${describe(metrics)})`,
    );
  const of = metricsEngine(metrics);
  if (of !== undefined && of !== engine)
    throw new InvalidArgumentError(
      `${what} options.metrics: the metrics were created for another engine than the one mounted`,
    );
  return { metrics, options };
}

/**
 * Builds the one handler of a mount: the dispatch routes (and OpenAPI document) under
 * `site.pathInUrl`, wrapped by `/metrics` and the dashboard when asked for; the dashboard and
 * `/metrics` take the dispatch routes' auth unless given their own.
 *
 * @throws {@link InvalidArgumentError} for an unknown or invalid option (named after the mount).
 */
export function mountHandler(
  engine: CallbackEngine,
  options: MountOptions,
  site: MountSite,
): Mounted {
  const { what, pathInUrl } = site;
  if (!isObject(options))
    throw new InvalidArgumentError(`${what} options must be an object (got ${describe(options)})`);
  if ('basePath' in options)
    throw new InvalidArgumentError(
      `${what} takes no basePath option: its routes live where it is mounted (the mount path or prefix)`,
    );
  checkKnownKeys(`${what} options`, options, MOUNT_OPTION_KEYS);
  const { dashboard, metrics, ...dispatchOptions } = options;
  const routes = ['/callbacks', '/callbacks/*', '/events'];
  if (dispatchOptions.openApi !== false) routes.push('/openapi.json');
  const streams: string[] = [];
  let handler: DispatchHandler = createDispatchHandler(engine, {
    ...dispatchOptions,
    basePath: pathInUrl,
  });
  if (metrics !== undefined) {
    const m = metricsOf(what, engine, metrics);
    const path = relativePath(`${what} options.metrics.path`, m.options.path, '/metrics');
    handler = withMetrics(handler, m.metrics, { ...m.options, path: pathInUrl + path });
    routes.push(path);
  }
  if (dashboard !== undefined) {
    const d = dashboardOf(what, engine, dashboard);
    const base = relativePath(
      `${what} options.dashboard.basePath`,
      d.options.basePath,
      '/dashboard',
    );
    handler = withDashboard(handler, d.monitor, { ...d.options, basePath: pathInUrl + base });
    routes.push(base, `${base}/*`);
    streams.push(`${base}/events`);
  }
  return { handler, routes: Object.freeze(routes), streams: Object.freeze(streams) };
}
