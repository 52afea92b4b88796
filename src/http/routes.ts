import { createHash } from 'node:crypto';
/**
 * The dispatch routes: CALLBACK messages, getCallback, callback URLs and
 * CloudEvents, each turned into an engine call and its answer into a reply.
 *
 * @module
 */

import { extractTraceContext, withTraceContext } from '../telemetry.js';
import type { IncomingHttpHeaders } from 'node:http';
import type { CallbackEngine } from '../callback-engine.js';
import { internalsOf } from '../engine-internals.js';
import { InvalidMessageError } from '../errors.js';
import { DISPATCH_STATUSES, isDispatchStatus } from '../lifecycle/statuses.js';
import { decodeToken } from '../token.js';
import type { CallbackMessage, DispatchResult, EarlyHoldResult } from '../types.js';
import { checkCharset, parseJson, requireJson, unsupported } from './body.js';
import {
  batchEntries,
  CE_BATCH_JSON,
  CE_JSON,
  contentMode,
  fromStructured,
  parseBinary,
  type IncomingEvent,
} from './cloudevents.js';
import type { ResolvedHandlerOptions } from './options.js';
import { errorReply, HttpError, resultReply, type Reply } from './respond.js';

/** What a route gets: the engine, the options, the request headers and its body. */
export interface RouteInput {
  readonly engine: CallbackEngine;
  readonly options: ResolvedHandlerOptions;
  readonly headers: IncomingHttpHeaders;
  /** The raw body, or a value a framework already parsed. */
  readonly body: { raw: Buffer } | { parsed: unknown };
  /** Whether CloudEvents may find their callback without its token (auth configured, or opted in). */
  readonly trustCorrelation: boolean;
}

function json(input: RouteInput, what: string): unknown {
  return 'raw' in input.body
    ? parseJson(input.body.raw, input.options.maxJsonDepth, what)
    : input.body.parsed;
}

/** `POST /callbacks` content check, before the body is read. @throws `HttpError` 415. */
export function checkMessageType(headers: IncomingHttpHeaders): void {
  requireJson(headers);
}

/** The request header carrying a report's deduplication key. */
export const DEDUP_HEADER = 'callback-dedup-key';

/** The `Callback-Dedup-Key` header, if sent. */
function dedupHeader(input: RouteInput): string | undefined {
  const v = input.headers[DEDUP_HEADER];
  return typeof v === 'string' ? v : undefined;
}

/** `POST /callbacks`: the CALLBACK message as JSON → the engine's answer. */
export async function postMessage(input: RouteInput): Promise<Reply> {
  let message = json(input, 'request body');
  if (message === undefined)
    throw new InvalidMessageError('request body is empty: send the CALLBACK message as JSON');
  const key = dedupHeader(input);
  if (
    key !== undefined &&
    typeof message === 'object' &&
    message !== null &&
    !Array.isArray(message)
  )
    message = { ...message, dedupKey: key };
  return resultReply(await input.engine.deliver(message as CallbackMessage));
}

/** `GET /callbacks/{token}`: getCallback. */
export async function getCallback(engine: CallbackEngine, token: string): Promise<Reply> {
  const answer = await engine.get(token);
  return resultReply({ answer, outcome: answer.status === 'notFound' ? 'notFound' : 'read' });
}

/**
 * `POST /callbacks/{token}/{status}` content check: an empty body needs no
 * content type; any other must be JSON. @throws `HttpError` 415.
 */
export function checkReportType(headers: IncomingHttpHeaders): void {
  const declared = headers['content-length'];
  if (
    headers['content-type'] === undefined &&
    (declared === '0' || (declared === undefined && headers['transfer-encoding'] === undefined))
  ) {
    return;
  }
  requireJson(headers);
}

/** `POST /callbacks/{token}/{status}`: the callback URL; the body is the report data (empty means `{}`). */
export async function postReport(input: RouteInput, token: string, status: string): Promise<Reply> {
  if (!isDispatchStatus(status))
    throw new InvalidMessageError(
      `the status in a callback URL (POST /callbacks/{token}/{status}) must be one of ${DISPATCH_STATUSES.join(', ')} (got ${JSON.stringify(status)})`,
    );
  const data = json(input, 'report data');
  const message = {
    type: 'CALLBACK',
    callbackToken: token,
    callbackStatus: status,
    callbackData: data ?? undefined,
    dedupKey: dedupHeader(input),
  };
  return resultReply(await input.engine.deliver(message as CallbackMessage));
}

/** `POST /events` content check: a CloudEvents content mode, UTF-8. @throws `HttpError` 415. */
export function checkEventType(headers: IncomingHttpHeaders): void {
  const mode = contentMode(headers);
  if (mode === undefined) {
    throw unsupported(
      `POST /events takes CloudEvents: binary mode (ce-specversion and other ce-* headers), or content-type ${CE_JSON} or ${CE_BATCH_JSON}`,
    );
  }
  if (mode !== 'binary') checkCharset(headers);
}

/**
 * `POST /events`: one event (binary or structured mode) → its dispatch answer;
 * a batch → `200` with a JSON array of per-event results, in order.
 */
export async function postEvents(input: RouteInput): Promise<Reply> {
  const { engine, options, headers } = input;
  const mode = contentMode(headers);
  if (mode === 'binary') {
    const raw =
      'raw' in input.body ? input.body.raw : Buffer.from(JSON.stringify(input.body.parsed ?? null));
    return dispatchEvent(
      engine,
      parseBinary(headers, raw, options.maxJsonDepth),
      input.trustCorrelation,
    );
  }
  const value = json(input, 'request body');
  if (mode === 'structured')
    return dispatchEvent(
      engine,
      fromStructured(value, options.maxJsonDepth),
      input.trustCorrelation,
    );
  const entries = batchEntries(value, options.maxBatchEvents);
  const results: Record<string, unknown>[] = [];
  let retry = false;
  // In order, one at a time: two events for one callback must apply in batch order.
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    let reply: Reply;
    try {
      reply = await dispatchEvent(
        engine,
        fromStructured(entry, options.maxJsonDepth, `events[${i}]: `),
        input.trustCorrelation,
      );
    } catch (err) {
      reply = errorReply(err, options.retryAfterSeconds);
    }
    if (reply.statusCode === 503) retry = true;
    const id =
      typeof entry === 'object' && entry !== null ? (entry as { id?: unknown }).id : undefined;
    results.push({
      id: typeof id === 'string' ? id : null,
      statusCode: reply.statusCode,
      // What the Callback-Outcome header says for a single event, per entry.
      ...(reply.outcome !== undefined && { outcome: reply.outcome }),
      ...(reply.body as object),
    });
  }
  return {
    statusCode: 200,
    body: results,
    headers: retry ? { 'retry-after': String(options.retryAfterSeconds) } : {},
  };
}

/**
 * Routes one event to its callback and dispatches it. The callback is found by
 * extension `callbacktoken`, else `callbackid` (instance-id correlation), else
 * the anchors' `correlate` attributes; the status is extension
 * `callbackstatus`, else the anchor's `eventTypes` entry for the event type.
 *
 * @param trustCorrelation - whether an event may find its callback without its
 *   signed token; when not, such an event is refused (403
 *   `CBE_ERR_UNTRUSTED_CORRELATION`) before any lookup.
 */
export async function dispatchEvent(
  engine: CallbackEngine,
  event: IncomingEvent,
  trustCorrelation: boolean,
): Promise<Reply> {
  const ext = event.extensions;
  let token: string | undefined;
  if (ext.callbacktoken !== undefined) token = String(ext.callbacktoken);
  else if (!trustCorrelation) throw untrustedCorrelation(ext.callbackid !== undefined);
  else if (ext.callbackid !== undefined)
    token = await engine.findToken({ id: String(ext.callbackid) });
  else token = await engine.findToken({ attributes: ext });
  let status: string | undefined =
    ext.callbackstatus === undefined ? undefined : String(ext.callbackstatus);
  // source + id identify an event (CloudEvents 1.0): a redelivered event is applied once.
  const dedupKey = cloudEventKey(event.source, event.id);
  if (token === undefined && ext.callbackid === undefined && ext.callbacktoken === undefined) {
    // No callback holds its correlation keys yet: an anchor that opted in may hold it (early).
    const held = await internalsOf(engine).holdEarly({
      attributes: ext,
      type: event.type,
      status,
      data: event.data,
      dedupKey,
    });
    if (held.kind === 'queued') return earlyReply(held);
    if (held.kind === 'found') token = held.token;
  }
  // Unmatched: a notFound answer, still through the engine (counted; rejects once closed).
  if (token === undefined) {
    // Still through the engine (counted; rejects once closed), with a message for what was sent.
    const reply = notFound(await engine.get(''));
    const body = reply.body as Record<string, unknown>;
    body.message =
      ext.callbackid !== undefined
        ? 'no callback has this callbackid: it is unknown, or its record was removed'
        : "no callback matches this event's correlation attributes, and no anchor holds early events for them";
    return reply;
  }
  if (status === undefined) {
    const anchor = decodeToken(token)?.anchor;
    status = anchor === undefined ? undefined : internalsOf(engine).eventStatus(anchor, event.type);
    if (status === undefined) {
      const answer = await engine.get(token);
      if (answer.status === 'notFound') return notFound(answer);
      throw new InvalidMessageError(
        `CloudEvent type ${JSON.stringify(event.type)} maps to no status: send extension attribute callbackstatus, or map the type in the anchor option eventTypes`,
      );
    }
  }
  const message = {
    type: 'CALLBACK',
    callbackToken: token,
    callbackStatus: status,
    callbackData: event.data ?? undefined,
    dedupKey,
  };
  // CloudEvents distributed tracing: the event's own traceparent, else the request's.
  if (typeof ext.traceparent === 'string') {
    const ctx = extractTraceContext(ext);
    return resultReply(
      await withTraceContext(ctx, () => engine.deliver(message as CallbackMessage)),
    );
  }
  return resultReply(await engine.deliver(message as CallbackMessage));
}

function untrustedCorrelation(byId: boolean): HttpError {
  return new HttpError(
    'CBE_ERR_UNTRUSTED_CORRELATION',
    403,
    `this CloudEvent names its callback by ${byId ? 'extension callbackid' : "an anchor's correlate keys (or nothing)"}, not by its signed token, and the handler has no auth: send extension callbacktoken, configure auth, or opt in with cloudEvents: { trustCorrelation: true }`,
  );
}

/**
 * `202` with `Callback-Outcome: queued` for an early event: held for `anchor` until its callback
 * is created (then applied before `create()` resolves) or until `expiresAt`.
 */
function earlyReply(held: Extract<EarlyHoldResult, { kind: 'queued' }>): Reply {
  return {
    statusCode: 202,
    body: {
      status: 'queued',
      anchor: held.anchor,
      expiresAt: new Date(held.expiresAt).toISOString(),
    },
    outcome: 'queued',
  };
}

function notFound(answer: DispatchResult['answer']): Reply {
  return resultReply({ answer, outcome: 'notFound' });
}

/**
 * The deduplication key of a CloudEvent: its `source` and `id` as a JSON pair (unambiguous:
 * `["a b","c"]` and `["a","b c"]` differ), or, when that is longer than a key may be, `ce:` and
 * the SHA-256 of it (never cut: two long ids that share a prefix stay apart).
 */
export function cloudEventKey(source: string, id: string): string {
  const pair = JSON.stringify([source, id]);
  if (pair.length <= 200) return pair;
  return `ce:${createHash('sha256').update(pair, 'utf8').digest('base64url')}`;
}
