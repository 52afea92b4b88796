/**
 * The channel hop (spec 4, Metrici connections): a token received from another engine (the
 * origin) is wrapped into a token of this engine, `{ useTransport: true, node, anchor, id,
 * transport: [{ url, token }], sig }`; reports and reads that arrive here with the wrapped token
 * are forwarded over HTTP to the origin's Dispatch Callback Service, and the origin's answer comes
 * back with the wrapped token in it.
 *
 * Nothing is stored: the hop (the origin's base URL and token) travels inside the wrapped token,
 * under this engine's HMAC, so any engine with the same node name and secrets (any replica of a
 * cluster) forwards it, and nobody can point it at another URL.
 *
 * @module
 */

import { setMaxListeners } from 'node:events';
import { Answer, notFoundAnswer } from '../answer.js';
import type { Clock } from '../clock.js';
import { DataVersion, ingestParsed, type CallbackData } from '../data.js';
import { describe } from '../duration.js';
import {
  InvalidArgumentError,
  OriginRefusedError,
  OriginUnavailableError,
  type DataIssue,
} from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import {
  ACTIVE_STATUSES,
  TERMINAL_STATUSES,
  type AnswerStatus,
  type CallbackStatus,
  type DispatchStatus,
} from '../lifecycle/statuses.js';
import type { ReadAction } from '../message.js';
import {
  decodeToken,
  MAX_TOKEN_LENGTH,
  WRAPPED_PREFIX,
  type TokenCodec,
  type TransportHop,
} from '../token.js';
import type { DispatchOutcome, DispatchResult, StepError } from '../types.js';
import { traceHeaders } from '../telemetry.js';
import { callOrigin, type OriginClientOptions, type OriginReply } from './origin-client.js';
import type { ResolvedRelayOptions } from './options.js';

/** Options of `engine.relay()`. */
export interface RelayTokenOptions {
  /**
   * Where the origin takes reports: its callback URL for this token (`{base}/callbacks/{token}`,
   * what the origin's `callbackUrl()` gives) or its base URL (the origin's `baseUrl`, the
   * prefix of its `/callbacks` routes). `http:` or `https:`, without credentials, query or
   * fragment.
   */
  to: string;
}

/** What the relay needs of its engine. */
export interface RelayHost {
  /** Mints and verifies this engine's wrapped tokens. */
  readonly codec: TokenCodec;
  /** The engine's clock: the forwarding timeout runs on it. */
  readonly clock: Clock;
  readonly options: ResolvedRelayOptions;
  /** A token that looks wrapped did not verify: count it as forged (notFound). */
  forged(): void;
}

/** One callback's forwarding queue: its requests go to the origin one at a time, in order. */
interface Lane {
  tail: Promise<unknown>;
  pending: number;
  /** The origin failed a request of this queue: the ones queued behind it are not sent. */
  failed: OriginUnavailableError | undefined;
}

const RELAY_OPTION_KEYS: readonly string[] = ['to'];
const CALLBACK_STATUSES: ReadonlySet<string> = new Set<string>([
  ...ACTIVE_STATUSES,
  ...TERMINAL_STATUSES,
]);
const OUTCOMES: ReadonlySet<string> = new Set<DispatchOutcome>([
  'applied',
  'ignored',
  'replayed',
  'conflict',
  'notFound',
  'read',
  'queued',
]);
const ERROR_CODE_RE = /^CBE_ERR_[A-Z0-9_]{1,64}$/;
const noop = () => {};

/** Forwards reports and reads for wrapped tokens to their origins. */
export class Relay {
  readonly #host: RelayHost;
  readonly #client: OriginClientOptions;
  readonly #closed = new AbortController();
  readonly #lanes = new Map<string, Lane>();

  constructor(host: RelayHost) {
    this.#host = host;
    // One listener per request in flight (at most one per relayed callback): not a leak.
    setMaxListeners(0, this.#closed.signal);
    this.#client = {
      clock: host.clock,
      timeoutMs: host.options.timeoutMs,
      maxAnswerBytes: host.options.maxAnswerBytes,
      headers: host.options.headers,
      closed: this.#closed.signal,
    };
  }

  /**
   * Whether a token is one this library wrapped: by its first characters, without decoding,
   * so the plain-token path pays nothing. (It still has to verify.)
   */
  static claims(token: unknown): token is string {
    return typeof token === 'string' && token.startsWith(WRAPPED_PREFIX);
  }

  /**
   * Wraps a token of another engine (see `engine.relay()`).
   *
   * @throws {@link InvalidArgumentError} for a malformed token, a bad `to`, or a wrapped token
   *   that would be longer than `MAX_TOKEN_LENGTH`.
   */
  wrap(token: unknown, options: unknown): string {
    const fields = decodeToken(token);
    if (fields === undefined)
      throw new InvalidArgumentError(
        `relay() needs a callback token of another engine (got ${describe(typeof token === 'string' && token.length > 60 ? `${token.slice(0, 60)}...` : token)})`,
      );
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      throw new InvalidArgumentError(
        `relay() options must be an object with "to" (got ${describe(options)})`,
      );
    checkKnownKeys('relay() options', options, RELAY_OPTION_KEYS);
    const url = originBase((options as { to?: unknown }).to, token as string);
    const wrapped = this.#host.codec.wrap(fields.anchor, fields.id, {
      url,
      token: token as string,
    });
    if (wrapped.length > MAX_TOKEN_LENGTH)
      throw new InvalidArgumentError(
        `relaying this token would make a wrapped token of ${wrapped.length} characters, over the limit of ${MAX_TOKEN_LENGTH} (a shorter origin URL, or fewer hops, fits)`,
      );
    return wrapped;
  }

  /**
   * Forwards a report (`POST {origin}/callbacks` with the origin's token) and answers with the
   * origin's answer, its token replaced by the wrapped one.
   *
   * @throws {@link OriginUnavailableError} (retryable) or {@link OriginRefusedError} (the
   *   origin's 4xx, as sent).
   */
  report(
    token: string,
    status: DispatchStatus,
    data: CallbackData,
    dedupKey: string | undefined,
  ): Promise<DispatchResult> {
    const hop = this.#verify(token);
    if (hop === undefined)
      return Promise.resolve({ answer: notFoundAnswer(token), outcome: 'notFound' });
    const message: Record<string, unknown> = {
      type: 'CALLBACK',
      callbackToken: hop.token,
      callbackStatus: status,
    };
    if (Object.keys(data).length > 0) message.callbackData = data;
    if (dedupKey !== undefined) message.dedupKey = dedupKey;
    // Taken now, while the report's dispatch span is active: the origin's spans join its trace.
    const trace = traceHeaders();
    return this.#inLane(hop, () =>
      callOrigin(
        { origin: hop.url, method: 'POST', path: '/callbacks', body: message, trace },
        this.#client,
      ).then((reply) => toResult(token, hop.url, reply, 'applied')),
    );
  }

  /**
   * Forwards a read (`GET {origin}/callbacks/{token}`): `getCallback` answers the origin's
   * `{ status, data }`, `exists` answers `exists` or `notFound`; both with the wrapped token.
   */
  read(token: string, action: ReadAction): Promise<DispatchResult> {
    const hop = this.#verify(token);
    if (hop === undefined)
      return Promise.resolve({ answer: notFoundAnswer(token), outcome: 'notFound' });
    return this.#inLane(hop, () =>
      callOrigin(
        { origin: hop.url, method: 'GET', path: `/callbacks/${encodeURIComponent(hop.token)}` },
        this.#client,
      ).then((reply): DispatchResult => {
        const result = toResult(token, hop.url, reply, 'read');
        if (action === 'getCallback' || result.outcome === 'notFound') return result;
        return { answer: new Answer('exists', token, DataVersion.EMPTY), outcome: 'read' };
      }),
    );
  }

  /** Aborts every request in flight (they reject with `EngineClosedError`); later ones too. */
  close(): void {
    this.#closed.abort();
  }

  #verify(token: string): TransportHop | undefined {
    const verified = this.#host.codec.verifyWrapped(token);
    if (verified === undefined) this.#host.forged();
    return verified?.hop;
  }

  /**
   * Runs `send` after the requests queued before it for the same origin callback: two reports
   * that arrive here in one order reach the origin in that order (one in flight at a time, as
   * the origin's mailbox would take them). Once one fails as unavailable, those already queued
   * behind it fail too without being sent, so none overtakes it when the outside party retries.
   */
  #inLane<T>(hop: TransportHop, send: () => Promise<T>): Promise<T> {
    const key = `${hop.url}\n${hop.token}`;
    let lane = this.#lanes.get(key);
    if (lane === undefined) {
      lane = { tail: Promise.resolve(), pending: 0, failed: undefined };
      this.#lanes.set(key, lane);
    }
    const l = lane;
    l.pending++;
    const run = l.tail
      .then(() => {
        const failed = l.failed;
        if (failed !== undefined)
          throw new OriginUnavailableError(
            failed.origin,
            `${failed.message}; a report queued behind the failed one was not sent, so the order holds`,
            { cause: failed },
          );
        return send();
      })
      .catch((err: unknown) => {
        if (err instanceof OriginUnavailableError) l.failed ??= err;
        throw err;
      })
      .finally(() => {
        if (--l.pending === 0 && this.#lanes.get(key) === l) this.#lanes.delete(key);
      });
    l.tail = run.then(noop, noop);
    return run;
  }
}

/**
 * The origin's base URL from `to`: a callback URL for `token` loses its `/callbacks/{token}`
 * tail; any other URL is the base itself.
 *
 * @throws {@link InvalidArgumentError} for anything but a plain http(s) URL, or the callback URL
 *   of another token.
 */
function originBase(to: unknown, token: string): string {
  let url: URL | undefined;
  try {
    url = typeof to === 'string' ? new URL(to) : undefined;
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:'))
    throw new InvalidArgumentError(
      `relay() options.to must be an http(s) URL: the origin's callback URL or base URL (got ${describe(to)})`,
    );
  if (url.username !== '' || url.password !== '')
    throw new InvalidArgumentError(
      'relay() options.to must not carry credentials: they would travel inside the wrapped token (use the engine option relay.headers)',
    );
  if (url.search !== '' || url.hash !== '')
    throw new InvalidArgumentError(
      `relay() options.to must have no query or fragment (got ${describe(to)})`,
    );
  let path = url.pathname.replace(/\/+$/, '');
  const m = /\/callbacks\/([^/]+)$/.exec(path);
  if (m) {
    let named: string | undefined;
    try {
      named = decodeURIComponent(m[1]!);
    } catch {
      named = undefined;
    }
    if (named === token) path = path.slice(0, m.index);
    else if (named !== undefined && decodeToken(named) !== undefined)
      throw new InvalidArgumentError(
        'relay() options.to is the callback URL of another token than the one relayed',
      );
  }
  return `${url.origin}${path}`;
}

/** The local result of an origin's reply to a report or read. */
function toResult(
  token: string,
  origin: string,
  reply: OriginReply,
  success: DispatchOutcome,
): DispatchResult {
  const { statusCode, body } = reply;
  const b =
    typeof body === 'object' && body !== null && !Array.isArray(body)
      ? (body as Record<string, unknown>)
      : undefined;
  if (statusCode >= 500)
    throw new OriginUnavailableError(
      origin,
      `the origin ${origin} answered ${statusCode}${typeof b?.code === 'string' ? ` ${b.code.slice(0, 80)}` : ''}${typeof b?.message === 'string' ? `: ${b.message.slice(0, 500)}` : ''}`,
    );
  const answer = b && answerOf(token, b);
  if (
    answer &&
    (statusCode === 200 || statusCode === 202 || statusCode === 404 || statusCode === 409)
  ) {
    let outcome: DispatchOutcome;
    if (answer.status === 'notFound') outcome = 'notFound';
    else if (reply.outcome !== undefined && OUTCOMES.has(reply.outcome))
      outcome = reply.outcome as DispatchOutcome;
    else if (statusCode === 409) outcome = 'conflict';
    else if (statusCode === 202) outcome = 'queued';
    else outcome = success;
    return { answer, outcome };
  }
  if (statusCode >= 400 && statusCode < 500) {
    const code = typeof b?.code === 'string' && ERROR_CODE_RE.test(b.code) ? b.code : undefined;
    throw new OriginRefusedError(
      origin,
      statusCode,
      code ?? 'CBE_ERR_ORIGIN_REFUSED',
      typeof b?.message === 'string'
        ? b.message.slice(0, 2000)
        : `the origin ${origin} refused the request (${statusCode})`,
      issuesOf(b?.issues),
    );
  }
  throw new OriginUnavailableError(
    origin,
    `the origin ${origin} answered ${statusCode} without a callback answer`,
  );
}

/** An origin's schema issues (`[{ path, message }]`, at most 20), or `undefined` if malformed. */
function issuesOf(value: unknown): DataIssue[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const out: DataIssue[] = [];
  for (const item of value.slice(0, 20) as unknown[]) {
    const i = item as { path?: unknown; message?: unknown } | null;
    if (typeof i !== 'object' || i === null || typeof i.message !== 'string') return undefined;
    const path = Array.isArray(i.path) ? i.path : [];
    if (!path.every((p) => typeof p === 'string' || typeof p === 'number')) return undefined;
    out.push({
      path: path.slice(0, 32),
      message: i.message.slice(0, 500),
    });
  }
  return out;
}

/** The answer in an origin's body, with the wrapped token, or `undefined` if it holds none. */
function answerOf(token: string, body: Record<string, unknown>): Answer | undefined {
  const status = body.status;
  if (typeof status !== 'string') return undefined;
  if (status === 'notFound') return notFoundAnswer(token);
  if (!CALLBACK_STATUSES.has(status)) return undefined;
  const data = body.data ?? {};
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const e = body.stepError as { status?: unknown; message?: unknown } | undefined;
  const stepError: StepError | undefined =
    typeof e === 'object' &&
    e !== null &&
    typeof e.status === 'string' &&
    CALLBACK_STATUSES.has(e.status) &&
    typeof e.message === 'string'
      ? { status: e.status as CallbackStatus, message: e.message }
      : undefined;
  return new Answer(
    status as AnswerStatus,
    token,
    DataVersion.of(ingestParsed('the origin answer data', data)),
    undefined,
    undefined,
    undefined,
    stepError,
  );
}
