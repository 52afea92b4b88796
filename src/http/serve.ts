/**
 * `serve()`: the Dispatch Callback Service as a standalone node:http server,
 * with request timeouts, keep-alive and malformed-request answers set.
 *
 * @module
 */

import {
  createServer,
  STATUS_CODES,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { CallbackEngine } from '../engine.js';
import { InvalidArgumentError } from '../errors.js';
import { createDispatchHandler, type DispatchHandler } from './handler.js';
import { checkKnownKeys } from '../keys.js';
import { HANDLER_OPTION_KEYS, HTTP_DEFAULTS, type DispatchHandlerOptions } from './options.js';
import type { ErrorBody } from './respond.js';

/** How often `close()` looks for keep-alive connections that became idle. */
const CLOSE_SWEEP_MS = 25;

/**
 * How often node:http looks for requests past their headers or request timeout. Node checks every
 * 30 s by default, so a 10 s headers timeout could take up to 40 s to fire; a tenth of the
 * shortest timeout (at most 1 s, at least 50 ms) keeps each within 10 % of its value.
 */
export function connectionsCheckingIntervalMs(
  headersTimeout: number,
  requestTimeout: number,
): number {
  const shortest = Math.min(...[headersTimeout, requestTimeout].filter((t) => t > 0));
  if (!Number.isFinite(shortest)) return 1000;
  return Math.min(1000, Math.max(50, Math.floor(shortest / 10)));
}

/** Options of {@link serve}: the handler's options plus the server's. */
export interface ServeOptions extends DispatchHandlerOptions {
  /** TCP port; `0` picks a free one. @default 0 */
  port?: number;
  /** Interface to listen on; `'0.0.0.0'` or `'::'` for all. @default '127.0.0.1' */
  host?: string;
  /**
   * Longest time to receive a whole request (headers and body), from its first byte; 408 and the
   * connection is closed after (within a tenth of it, at most 1 s, later). `0` turns it off.
   * @default 30000
   */
  requestTimeoutMs?: number;
  /**
   * Longest time to receive the request headers, from the request's first byte; 408 and the
   * connection is closed after (within a tenth of it, at most 1 s, later). Not above
   * `requestTimeoutMs`.
   * @default 10000
   */
  headersTimeoutMs?: number;
  /**
   * How long an idle keep-alive connection stays open. Behind a load balancer,
   * set it above the balancer's idle timeout.
   * @default 5000
   */
  keepAliveTimeoutMs?: number;
  /** On `close()`, how long in-flight requests may finish before their connections are cut. @default 5000 */
  closeTimeoutMs?: number;
  /**
   * Mounts more of the service in front of the dispatch routes: gets the dispatch handler and
   * returns the handler to serve, e.g. `(h) => withDashboard(withMetrics(h, metrics), monitor)`.
   * Those parts take the dispatch routes' auth (unless given their own).
   * @default none: the dispatch routes only
   */
  wrap?: (
    handler: DispatchHandler,
  ) => (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;
}

const SERVE_OPTION_KEYS: readonly string[] = Object.freeze([
  ...HANDLER_OPTION_KEYS,
  'port',
  'host',
  'requestTimeoutMs',
  'headersTimeoutMs',
  'keepAliveTimeoutMs',
  'closeTimeoutMs',
  'wrap',
]);

/** A running standalone service. */
export interface DispatchServer {
  /** The base URL, e.g. `http://127.0.0.1:39123` (use it as the engine's `baseUrl`). */
  readonly url: string;
  /** The underlying node:http server. */
  readonly server: Server;
  /**
   * Stops accepting connections, closes idle ones, lets in-flight requests
   * finish (up to `closeTimeoutMs`), then resolves. Does not close the engine.
   */
  close(): Promise<void>;
}

function ms(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(
      `options.${name} must be a non-negative integer of milliseconds (got ${typeof value === 'number' ? value : (JSON.stringify(value) ?? typeof value)})`,
    );
  }
  return value;
}

/** Answers a request node:http could not parse, in the same JSON shape as every other error. */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  // A response already under way on this socket cannot be followed by another.
  const current = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || current?.headersSent) {
    socket.destroy();
    return;
  }
  let status = 400;
  let body: ErrorBody = { code: 'CBE_ERR_INVALID_MESSAGE', message: 'malformed HTTP request' };
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431;
    body = { code: 'CBE_ERR_PAYLOAD_TOO_LARGE', message: 'request headers are too large' };
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    body = { code: 'CBE_ERR_REQUEST_TIMEOUT', message: 'the request was not received in time' };
  }
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
  );
}

/**
 * Starts the Dispatch Callback Service as a standalone server.
 *
 * @param engine - the engine to dispatch to.
 * @param options - port, host, timeouts, `wrap` (the dashboard, metrics), and every
 *   {@link DispatchHandlerOptions} option.
 * @returns once listening: the URL and `close()`.
 * @throws `InvalidArgumentError` (rejects) for an invalid option; the listen error if the port is taken.
 * @example
 * ```ts
 * const service = await serve(engine, { port: 8080, host: '0.0.0.0', auth: { bearer: secret } });
 * console.log(`callbacks at ${service.url}/callbacks`);
 * await service.close();
 * ```
 */
export async function serve(
  engine: CallbackEngine,
  options: ServeOptions = {},
): Promise<DispatchServer> {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new InvalidArgumentError('serve options must be an object');
  checkKnownKeys('serve options', options, SERVE_OPTION_KEYS);
  const {
    port = 0,
    host = '127.0.0.1',
    requestTimeoutMs,
    headersTimeoutMs,
    keepAliveTimeoutMs,
    closeTimeoutMs,
    wrap,
    ...handlerOptions
  } = options;
  if (wrap !== undefined && typeof wrap !== 'function')
    throw new InvalidArgumentError(
      `options.wrap must be a function from the dispatch handler to a request handler (got ${typeof wrap})`,
    );
  if (!Number.isSafeInteger(port) || port < 0 || port > 65_535) {
    throw new InvalidArgumentError(
      `options.port must be an integer from 0 to 65535 (got ${String(port)})`,
    );
  }
  if (typeof host !== 'string' || host.length === 0) {
    throw new InvalidArgumentError(`options.host must be a non-empty string (got ${String(host)})`);
  }
  const requestTimeout = ms('requestTimeoutMs', requestTimeoutMs, 30_000);
  const headersTimeout = ms(
    'headersTimeoutMs',
    headersTimeoutMs,
    Math.min(10_000, requestTimeout || 10_000),
  );
  if (requestTimeout > 0 && headersTimeout > requestTimeout) {
    throw new InvalidArgumentError(
      `options.headersTimeoutMs (${headersTimeout}) must not exceed options.requestTimeoutMs (${requestTimeout})`,
    );
  }
  const keepAlive = ms('keepAliveTimeoutMs', keepAliveTimeoutMs, 5_000);
  const grace = ms('closeTimeoutMs', closeTimeoutMs, 5_000);
  const dispatch = createDispatchHandler(engine, handlerOptions);
  const handler = wrap === undefined ? dispatch : wrap(dispatch);
  if (typeof handler !== 'function')
    throw new InvalidArgumentError(
      `options.wrap must return a request handler (got ${typeof handler})`,
    );
  const limit = handlerOptions.maxBodyBytes ?? HTTP_DEFAULTS.maxBodyBytes;

  const server = createServer(
    {
      requestTimeout,
      headersTimeout,
      keepAliveTimeout: keepAlive,
      connectionsCheckingInterval: connectionsCheckingIntervalMs(headersTimeout, requestTimeout),
    },
    handler,
  );
  server.on('clientError', onClientError);
  // `Expect: 100-continue`: only invite a body the limit allows; the handler answers 413 otherwise.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (!(Number(req.headers['content-length']) > limit)) res.writeContinue();
    handler(req, res);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostPart}:${address.port}`,
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), grace);
        timer.unref();
        // A keep-alive connection whose last request finishes after close() began turns idle
        // later; sweep idle connections until the server is down.
        const sweep = setInterval(() => server.closeIdleConnections(), CLOSE_SWEEP_MS);
        sweep.unref();
        server.close(() => {
          clearTimeout(timer);
          clearInterval(sweep);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
