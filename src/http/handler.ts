/**
 * `createDispatchHandler()`: the framework-neutral request handler of the
 * Dispatch Callback Service (spec 11.2 and 11.3).
 *
 * @module
 */

import { extractTraceContext, withTraceContext } from '../telemetry.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CallbackEngine } from '../engine.js';
import { PayloadTooLargeError } from '../errors.js';
import { toError } from '../thrown.js';
import {
  authCheck,
  bearerOk,
  bearerRefused,
  parsedBodyRefused,
  readSignature,
  verifySignature,
  type AuthCheck,
} from './auth.js';
import { ClientGoneError, prereadBody, readBody } from './body.js';
import { carryAuth, registerDispatchAuth } from './gate.js';
import { createOpenApiDocument } from './openapi.js';
import {
  resolveHandlerOptions,
  type DispatchHandlerOptions,
  type ResolvedHandlerOptions,
} from './options.js';
import { ALLOWED, matchRoute, pathOf, type RouteMatch } from './router.js';
import { HttpError, errorReply, send, type Reply } from './respond.js';
import {
  checkEventType,
  checkMessageType,
  checkReportType,
  getCallback,
  postEvents,
  postMessage,
  postReport,
  type RouteInput,
} from './routes.js';

/**
 * A request handler for node:http, Express and Connect (`next` is called for
 * paths that are not its routes, when given) and Fastify (with the raw request
 * and reply). It never throws and never rejects.
 */
export type DispatchHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next?: (err?: unknown) => void,
) => void;

const EMPTY = Buffer.alloc(0);

/** Per-handler state computed once from the options. */
interface HandlerState {
  readonly engine: CallbackEngine;
  readonly options: ResolvedHandlerOptions;
  readonly auth: AuthCheck | undefined;
  /** Whether CloudEvents may find a callback without its token. */
  readonly trustCorrelation: boolean;
  readonly openApiJson: string;
}

/**
 * Creates the Dispatch Callback Service handler for an engine.
 *
 * Routes (under `basePath`): `POST /callbacks` (CALLBACK message),
 * `GET /callbacks/{token}` (getCallback), `POST /callbacks/{token}/{status}`
 * (callback URL; body = report data), `POST /events` (CloudEvents: binary,
 * structured, batch), `GET /openapi.json`.
 *
 * Statuses: 200 applied, ignored, replayed or read; 404 `notFound` (the body
 * still carries `status: 'notFound'`) or an unknown route; 409 callback no
 * longer active (the body carries its current status); 400 malformed JSON,
 * message or data; 401 auth; 405 wrong method (`Allow`); 413 body over
 * `maxBodyBytes` (refused while streaming; the connection is closed) or data
 * over the engine's limit; 415 wrong content type; 503 pool saturated or
 * engine closed (`Retry-After`). Error bodies are `{ code, message }`.
 *
 * Answers to reports and reads carry a `Callback-Outcome` header: `applied`,
 * `ignored` (a backward or repeated `accept`/`start`: nothing changed),
 * `replayed`, `conflict`, `notFound` or `read` (`queued` is reserved).
 *
 * Mount it before any body parser: HMAC signatures need the raw body (a
 * signed request whose body a parser consumed is refused with a 401 that says so).
 *
 * @param engine - the engine to dispatch to.
 * @param options - base path, limits, auth.
 * @returns the handler.
 * @throws `InvalidArgumentError` naming the first invalid option.
 * @example
 * ```ts
 * import { createServer } from 'node:http';
 * import { createDispatchHandler } from 'callback-engine/http';
 *
 * createServer(createDispatchHandler(engine, { auth: { bearer: process.env.CALLBACK_BEARER! } })).listen(8080);
 * // Express: app.use('/hooks', callbackEngineRouter(engine, { auth })) from 'callback-engine/express'
 * // Fastify: app.register(callbackEngine, { engine, prefix: '/hooks', auth }) from 'callback-engine/fastify'
 * ```
 */
export function createDispatchHandler(
  engine: CallbackEngine,
  options?: DispatchHandlerOptions,
): DispatchHandler {
  const resolved = resolveHandlerOptions(options);
  const auth = authCheck(resolved.bearer, resolved.hmac, engine.clock);
  // The engine's admin parts (dashboard, metrics) take this auth, wherever they are mounted.
  registerDispatchAuth(engine, auth);
  const state: HandlerState = {
    engine,
    options: resolved,
    auth,
    trustCorrelation: auth !== undefined || resolved.trustCorrelation,
    openApiJson: JSON.stringify(
      createOpenApiDocument({
        basePath: resolved.basePath,
        auth: {
          bearer: resolved.bearer !== undefined,
          ...(resolved.hmac ? { hmac: { header: resolved.hmac.header } } : {}),
        },
        ...(engine.baseUrl === undefined ? {} : { serverUrl: engine.baseUrl }),
      }),
    ),
  };
  const handler: DispatchHandler = (req, res, next) => {
    // `handle` catches everything itself; this catch only guards against a bug in that guard.
    handle(state, req, res, next).catch(reportBug);
  };
  return carryAuth(handler, auth ?? null);
}

function reportBug(err: unknown): void {
  try {
    process.emitWarning(`callback-engine/http: ${toError(err).message}`, {
      type: 'CallbackEngineWarning',
      code: 'CBE_W_HTTP_HANDLER',
    });
  } catch {
    // Nothing is left to report to; the process must not go down for it.
  }
}

function fail(state: HandlerState, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  if (err instanceof ClientGoneError) {
    res.destroy();
    return;
  }
  send(res, errorReply(err, state.options.retryAfterSeconds), !req.complete);
}

async function handle(
  state: HandlerState,
  req: IncomingMessage,
  res: ServerResponse,
  next: ((err?: unknown) => void) | undefined,
): Promise<void> {
  try {
    // W3C trace context: the report's spans join the caller's trace (no-op without an SDK).
    const traceparent = req.headers.traceparent;
    if (typeof traceparent === 'string') {
      const ctx = extractTraceContext({ traceparent, tracestate: req.headers.tracestate });
      await withTraceContext(ctx, () => serveRequest(state, req, res, next));
    } else {
      await serveRequest(state, req, res, next);
    }
  } catch (err) {
    fail(state, req, res, err);
  }
}

async function serveRequest(
  state: HandlerState,
  req: IncomingMessage,
  res: ServerResponse,
  next: ((err?: unknown) => void) | undefined,
): Promise<void> {
  const method = req.method ?? 'GET';
  const route = matchRoute(pathOf(req.url), state.options.basePath);
  if (route === undefined || (route.name === 'openapi' && !state.options.openApi)) {
    if (next) return next();
    throw new HttpError(
      'CBE_ERR_ROUTE_NOT_FOUND',
      404,
      `no route for ${method} ${pathOf(req.url).slice(0, 200)}`,
    );
  }
  const { options: o, auth } = state;
  // One gate, first: every route and every method (OPTIONS and the OpenAPI document included)
  // answers 401 before anything else is said about a request without the credentials.
  let body: RouteInput['body'] | undefined;
  if (auth !== undefined) body = await authenticate(auth, req, o.maxBodyBytes);

  const allowed = ALLOWED[route.name];
  if (!allowed.includes(method)) {
    throw new HttpError(
      'CBE_ERR_METHOD_NOT_ALLOWED',
      405,
      `method ${JSON.stringify(method.slice(0, 20))} is not allowed on this route; use ${allowed.join(', ')}`,
      { allow: allowed.join(', ') },
    );
  }
  if (method === 'OPTIONS') return options(req, res, route, allowed);
  if (route.name === 'openapi') return openApi(req, res, state.openApiJson);

  if (route.name === 'callbacks') checkMessageType(req.headers);
  else if (route.name === 'callbackUrl') checkReportType(req.headers);
  else if (route.name === 'events') checkEventType(req.headers);

  body ??= prereadBody(req) ?? {
    raw: method === 'POST' ? await readBody(req, o.maxBodyBytes) : EMPTY,
  };
  if ('raw' in body && body.raw.length > o.maxBodyBytes) {
    throw new PayloadTooLargeError(
      `request body is over the limit of ${o.maxBodyBytes} bytes`,
      o.maxBodyBytes,
    );
  }

  const input: RouteInput = {
    engine: state.engine,
    options: o,
    headers: req.headers,
    body,
    trustCorrelation: state.trustCorrelation,
  };
  let reply: Reply;
  switch (route.name) {
    case 'callbacks':
      reply = await postMessage(input);
      break;
    case 'callback':
      reply = await getCallback(state.engine, route.token);
      break;
    case 'callbackUrl':
      reply = await postReport(input, route.token, route.status);
      break;
    case 'events':
      reply = await postEvents(input);
      break;
  }
  send(res, reply, !req.complete);
}

/**
 * The gate of the dispatch routes: bearer first, before reading a byte of the body; then a
 * signature's header (present, well formed, fresh) before the body is read, and the signature
 * over the body once it is. With both configured, both must pass.
 *
 * @returns the body read to verify a signature (so it is not read twice), or `undefined`.
 * @throws `HttpError` 401 when the credentials do not pass.
 */
async function authenticate(
  auth: AuthCheck,
  req: IncomingMessage,
  maxBodyBytes: number,
): Promise<RouteInput['body'] | undefined> {
  if (auth.bearer !== undefined && !bearerOk(auth.bearer, req.headers))
    throw bearerRefused(req.headers);
  if (auth.hmac === undefined) return undefined;
  const claim = readSignature(auth.hmac, auth.clock, req);
  if (claim instanceof HttpError) throw claim;
  const preread = prereadBody(req);
  const body = preread ?? { raw: declaresBody(req) ? await readBody(req, maxBodyBytes) : EMPTY };
  // A body parser ran first: the bytes the client signed are gone.
  if (!('raw' in body) || (preread !== undefined && bodyLost(req, body.raw)))
    throw parsedBodyRefused(auth.hmac.header);
  const refused = verifySignature(auth.hmac, claim, req, body.raw);
  if (refused !== undefined) throw refused;
  return body;
}

/** Whether a request says it has a body (whatever its method). */
function declaresBody(req: IncomingMessage): boolean {
  const declared = req.headers['content-length'];
  return (
    (declared !== undefined && declared !== '0') || req.headers['transfer-encoding'] !== undefined
  );
}

/** Whether a consumed stream left no body although the request declared one. */
function bodyLost(req: IncomingMessage, raw: Buffer): boolean {
  if (raw.length > 0) return false;
  const declared = req.headers['content-length'];
  return (
    (declared !== undefined && declared !== '0') || req.headers['transfer-encoding'] !== undefined
  );
}

function options(
  req: IncomingMessage,
  res: ServerResponse,
  route: RouteMatch,
  allowed: readonly string[],
): void {
  const headers: Record<string, string> = { allow: allowed.join(', '), 'content-length': '0' };
  if (!req.complete) headers.connection = 'close';
  // CloudEvents HTTP webhook abuse protection: consent to deliveries from the requesting origin.
  const origin = req.headers['webhook-request-origin'];
  if (
    route.name === 'events' &&
    typeof origin === 'string' &&
    origin.length > 0 &&
    origin.length <= 255
  ) {
    headers['webhook-allowed-origin'] = /^[\x21-\x7e]+$/.test(origin) ? origin : '*';
    headers['webhook-allowed-rate'] = '*';
    res.writeHead(200, headers);
  } else {
    res.writeHead(204, headers);
  }
  res.end();
}

function openApi(req: IncomingMessage, res: ServerResponse, json: string): void {
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(json),
    'cache-control': 'public, max-age=300',
    ...(req.complete ? {} : { connection: 'close' }),
  });
  res.end(json);
}
