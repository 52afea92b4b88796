/**
 * `createCallbackClient()`: what an outside party needs to report back to a
 * callback-engine service: signed requests, a deduplication key that stays
 * the same across retries, backoff with jitter that honours `Retry-After`,
 * and a typed result.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import {
  DISPATCH_STATUSES,
  type AnswerStatus,
  type DispatchStatus,
} from '../lifecycle/statuses.js';
import { nextDelay, parseRetryAfter } from './backoff.js';
import {
  ReportAbortedError,
  ReportBadAnswerError,
  ReportRefusedError,
  ReportUnavailableError,
  type CallbackClientErrorOptions,
} from './errors.js';
import { authHeaders, type ClientAuth } from './sign.js';

/** A status an outside party may report. */
export type ReportStatus = DispatchStatus;

/**
 * How the service handled a report (its `Callback-Outcome` header):
 * - `applied`: the report moved the callback (status, data, step).
 * - `ignored`: a late or repeated `accept`/`start`; nothing changed (HTTP 200). Not an error:
 *   the callback had already moved past it.
 * - `replayed`: this report (its deduplication key, or the same terminal report) was applied
 *   before; nothing changed again (HTTP 200). A retry whose first attempt got through ends here.
 * - `conflict`: the callback already ended otherwise (HTTP 409); `status` says how
 *   (`cancel`, `timeout`, ...): stop working on it.
 * - `notFound`: the token is unknown, forged, or its record was removed (HTTP 404).
 * - `queued`: accepted durably, applied later in order (HTTP 202): the service runs several
 *   replicas and the callback's owner did not answer in time, or a CloudEvent arrived before
 *   its callback exists and its anchor holds such events.
 */
export type ReportKind = 'applied' | 'ignored' | 'replayed' | 'conflict' | 'notFound' | 'queued';

/** The answer to a report. */
export interface ReportResult<TData extends object = Readonly<Record<string, unknown>>> {
  /** How the service handled it. */
  readonly kind: ReportKind;
  /**
   * The callback's status after handling (may differ from what was reported: `cancel`,
   * `timeout`, ...); `notFound`; `queued` for a CloudEvent held before its callback exists.
   */
  readonly status: AnswerStatus | 'queued';
  /** The callback's merged data after handling (`{}` for `notFound` and held events). */
  readonly data: TData;
  /** The callback's token, as the service answered it (absent for held events). */
  readonly token: string | undefined;
  /** Requests sent, the answered one included (1 when the first attempt got through). */
  readonly attempts: number;
  /** The HTTP status of the answer (200, 202, 404 or 409). */
  readonly statusCode: number;
  /**
   * The deduplication key the report carried on every attempt (the CloudEvent `id` for
   * events: the service deduplicates events by `source` and `id`).
   */
  readonly dedupKey: string;
}

/** Credentials of {@link CallbackClientOptions.auth}: what the service's `auth` option asks for. */
export interface CallbackClientAuth {
  /** Sent as `Authorization: Bearer <token>`. */
  bearer?: string;
  /** Signs every attempt (fresh timestamp) like `signRequest()`. */
  hmac?: {
    /** The shared secret (the first of the service's list while rotating). */
    secret: string | Buffer;
    /** The signature header. @default 'callback-signature' */
    header?: string;
  };
}

/** The time source of a client (the engine's `Clock` satisfies it). */
export interface ClientClock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** Options of {@link createCallbackClient}. Every one is checked when the client is created. */
export interface CallbackClientOptions {
  /**
   * The service's base URL including any mount prefix, e.g. `https://orders.example/hooks`:
   * needed to report by token (`POST {baseUrl}/callbacks/{token}/{status}`) and to send
   * CloudEvents (`POST {baseUrl}/events`). Not needed to report to a callback URL.
   */
  baseUrl?: string;
  /** Bearer token and/or HMAC secret, as the service is configured. @default none */
  auth?: CallbackClientAuth;
  /** Requests per report at most, the first included. @default 8 */
  maxAttempts?: number;
  /** Upper bound of the first retry's random delay; doubles with each retry. @default 250 */
  baseDelayMs?: number;
  /** Upper bound of any retry's random delay (a longer `Retry-After` is still honoured). @default 30000 */
  maxDelayMs?: number;
  /**
   * Time budget of one report, from its first attempt to its last answer: no retry starts (or
   * waits for a `Retry-After`) past it. @default 120000
   */
  maxElapsedMs?: number;
  /** Longest wait for one attempt's answer; it then counts as failed and is retried. @default 10000 */
  attemptTimeoutMs?: number;
  /** Largest answer body read; a larger one is a {@link ReportBadAnswerError}. @default 4194304 */
  maxAnswerBytes?: number;
  /** Extra headers on every request (e.g. `user-agent`). @default none */
  headers?: Readonly<Record<string, string>>;
  /** The `fetch` to send with. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Time for the budget and signature timestamps. @default Date.now */
  clock?: ClientClock;
  /**
   * Waits between attempts; must reject (or resolve early) when `signal` aborts. Tests pass
   * one that records the delay and returns at once. @default a timer that keeps Node alive
   */
  sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  /** Source of jitter in [0, 1). @default Math.random */
  random?: () => number;
}

/** Per-report options. */
export interface ReportOptions {
  /**
   * The deduplication key (1–200 characters), sent on every attempt as `Callback-Dedup-Key`:
   * pass your own (e.g. your job id and step) to keep a report applied once across restarts
   * of your process too. @default a random UUID, made once per report
   */
  dedupKey?: string;
  /** Aborts the report: waits and the request in flight stop, {@link ReportAbortedError}. */
  signal?: AbortSignal;
}

/** A CloudEvent to send with {@link CallbackClient.sendEvent}. */
export interface CallbackEventInput {
  /** The event type; the anchor's `eventTypes` may map it to a status. */
  type: string;
  /** The event source, e.g. `/payments/psp`. */
  source: string;
  /** The event id; with `source` it deduplicates the event. @default a random UUID, made once per event */
  id?: string;
  /** Names the callback by its token (extension `callbacktoken`). */
  callbackToken?: string;
  /** Names the callback by its id (extension `callbackid`; needs auth on the service). */
  callbackId?: string;
  /** The reported status (extension `callbackstatus`); else the anchor maps `type`. */
  callbackStatus?: ReportStatus;
  /** The event data (JSON): the report data. */
  data?: unknown;
  subject?: string;
  /** RFC 3339 timestamp. */
  time?: string;
  /** More extension attributes (names: lower-case letters and digits), e.g. correlation keys. */
  extensions?: Readonly<Record<string, string | number | boolean>>;
}

/** Per-event options. */
export interface EventOptions {
  /**
   * `structured` sends the whole event as the JSON body (`application/cloudevents+json`);
   * `binary` sends attributes as `ce-*` headers and the data as the body. Structured is the
   * default because an HMAC signature covers the body: every attribute is signed.
   * @default 'structured'
   */
  mode?: 'structured' | 'binary';
  /** Where to send it. @default `${baseUrl}/events` */
  url?: string;
  signal?: AbortSignal;
}

/** A client of one callback-engine service. */
export interface CallbackClient {
  /**
   * Reports a status to a callback: `POST {callbackUrl}/{status}` with `data` as the JSON body,
   * retried until a definite answer.
   *
   * @param target - the callback URL the service handed out (`https://…/callbacks/{token}`),
   *   or the token itself (then `baseUrl` is needed).
   * @param status - `accept`, `start`, `progress`, `complete`, `error` or `cancel`.
   * @param data - the report data, a JSON object. @default {}
   * @returns how it was handled: applied, ignored, replayed, conflict, notFound or queued.
   * @throws {@link ReportRefusedError} (4xx), {@link ReportUnavailableError} (retries used up),
   *   {@link ReportAbortedError}, {@link ReportBadAnswerError}; `InvalidArgumentError` for bad
   *   arguments (thrown before anything is sent).
   */
  report<TData extends object = Readonly<Record<string, unknown>>>(
    target: string,
    status: ReportStatus,
    data?: Readonly<Record<string, unknown>>,
    options?: ReportOptions,
  ): Promise<ReportResult<TData>>;
  /**
   * Sends one CloudEvent to the service's `/events` endpoint, retried until a definite answer
   * (the event `id`, made once, deduplicates the retries).
   *
   * @returns how it was handled, as for {@link CallbackClient.report}.
   * @throws as {@link CallbackClient.report}.
   */
  sendEvent<TData extends object = Readonly<Record<string, unknown>>>(
    event: CallbackEventInput,
    options?: EventOptions,
  ): Promise<ReportResult<TData>>;
}

/** Defaults of {@link CallbackClientOptions}. */
export const CLIENT_DEFAULTS = Object.freeze({
  maxAttempts: 8,
  baseDelayMs: 250,
  maxDelayMs: 30_000,
  maxElapsedMs: 120_000,
  attemptTimeoutMs: 10_000,
  maxAnswerBytes: 4 * 1024 * 1024,
  hmacHeader: 'callback-signature',
});

const OPTION_KEYS = new Set([
  'baseUrl',
  'auth',
  'maxAttempts',
  'baseDelayMs',
  'maxDelayMs',
  'maxElapsedMs',
  'attemptTimeoutMs',
  'maxAnswerBytes',
  'headers',
  'fetch',
  'clock',
  'sleep',
  'random',
]);
/** Answers that a later attempt may turn into a definite one. */
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);
const DEDUP_HEADER = 'callback-dedup-key';
const OUTCOME_HEADER = 'callback-outcome';
const EXTENSION_RE = /^[a-z0-9]{1,64}$/;
const CONTEXT_ATTRIBUTES = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'datacontenttype',
  'dataschema',
  'subject',
  'time',
  'data',
  'data_base64',
]);
const TOKEN_HEADER_RE = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

const show = (v: unknown): string => {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return 'a function';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
};

function positiveInt(name: string, value: unknown, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new InvalidArgumentError(
      `options.${name} must be an integer of at least ${min} (got ${show(value)})`,
    );
  return value;
}

function checkUrl(name: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`${name} must be an absolute http(s) URL (got ${show(value)})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InvalidArgumentError(`${name} must be an http(s) URL (got ${show(value)})`);
  if (url.search !== '' || url.hash !== '')
    throw new InvalidArgumentError(
      `${name} must not carry a query or fragment (got ${show(value)})`,
    );
  return value.replace(/\/+$/, '');
}

function resolveAuth(auth: unknown): ClientAuth {
  if (auth === undefined) return { bearer: undefined, hmac: undefined };
  if (typeof auth !== 'object' || auth === null)
    throw new InvalidArgumentError(`options.auth must be an object (got ${show(auth)})`);
  const a = auth as CallbackClientAuth;
  for (const key of Object.keys(a))
    if (key !== 'bearer' && key !== 'hmac')
      throw new InvalidArgumentError(`options.auth has an unknown key ${show(key)}`);
  if (a.bearer === undefined && a.hmac === undefined)
    throw new InvalidArgumentError('options.auth must set bearer, hmac, or both');
  if (a.bearer !== undefined && !(typeof a.bearer === 'string' && /^[\x21-\x7e]+$/.test(a.bearer)))
    throw new InvalidArgumentError(
      'options.auth.bearer must be a non-empty string of visible ASCII characters',
    );
  let hmac: ClientAuth['hmac'];
  if (a.hmac !== undefined) {
    if (typeof a.hmac !== 'object' || a.hmac === null)
      throw new InvalidArgumentError(`options.auth.hmac must be an object (got ${show(a.hmac)})`);
    const { secret, header = CLIENT_DEFAULTS.hmacHeader } = a.hmac;
    if (!((typeof secret === 'string' || Buffer.isBuffer(secret)) && secret.length > 0))
      throw new InvalidArgumentError(
        'options.auth.hmac.secret must be a non-empty string or Buffer',
      );
    if (typeof header !== 'string' || !TOKEN_HEADER_RE.test(header.toLowerCase()))
      throw new InvalidArgumentError(
        `options.auth.hmac.header must be an HTTP header name (got ${show(header)})`,
      );
    hmac = { secret, header: header.toLowerCase() };
  }
  return { bearer: a.bearer, hmac };
}

/** The default wait: a timer that keeps Node alive (someone awaits the report), abortable. */
function realSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** One request of a report, built once and sent on every attempt (signed anew each time). */
interface Prepared {
  readonly url: string;
  readonly target: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly dedupKey: string;
  readonly signal: AbortSignal | undefined;
}

/** An attempt's outcome: a definite result, a definite failure, or a reason to retry. */
type Attempt =
  | { readonly done: ReportResult }
  | {
      readonly retry: string;
      readonly retryAfterMs: number | undefined;
      readonly statusCode?: number;
    };

class AnswerTooLarge extends Error {}
class AttemptTimedOut extends Error {}

/**
 * Creates a client for an outside party that reports back to a callback-engine service.
 *
 * Each report is sent until it gets a definite answer: retried with exponential backoff and
 * full jitter after a network error, a timeout or a retryable status (408, 429, 5xx), waiting
 * at least what `Retry-After` asks for, within `maxAttempts` and `maxElapsedMs`. Every attempt
 * carries the same deduplication key, so the service applies the report once however many
 * attempts reached it. Answers about the callback (applied, ignored, replayed, conflict,
 * notFound, queued) are results, not errors.
 *
 * @param options - base URL, credentials, retry bounds, and test seams (`fetch`, `clock`,
 *   `sleep`, `random`).
 * @returns the client.
 * @throws `InvalidArgumentError` (code `CBE_ERR_INVALID_ARGUMENT`) for an invalid option.
 * @example
 * ```ts
 * import { createCallbackClient } from 'callback-engine/client';
 *
 * const client = createCallbackClient({ auth: { hmac: { secret: process.env.CALLBACK_SECRET! } } });
 * // callbackUrl came with the job: https://orders.example/hooks/callbacks/eyJ…
 * const result = await client.report(callbackUrl, 'complete', { receipt: 'R-42' });
 * if (result.kind === 'conflict') console.log(`the caller ended it: ${result.status}`);
 * ```
 */
export function createCallbackClient(options: CallbackClientOptions = {}): CallbackClient {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new InvalidArgumentError('createCallbackClient options must be an object');
  for (const key of Object.keys(options))
    if (!OPTION_KEYS.has(key))
      throw new InvalidArgumentError(
        `createCallbackClient options has an unknown key ${show(key)} (known: ${[...OPTION_KEYS].join(', ')})`,
      );
  const baseUrl =
    options.baseUrl === undefined
      ? undefined
      : typeof options.baseUrl === 'string'
        ? checkUrl('options.baseUrl', options.baseUrl)
        : (() => {
            throw new InvalidArgumentError(
              `options.baseUrl must be a string (got ${show(options.baseUrl)})`,
            );
          })();
  const auth = resolveAuth(options.auth);
  const maxAttempts = positiveInt('maxAttempts', options.maxAttempts, CLIENT_DEFAULTS.maxAttempts);
  const baseDelayMs = positiveInt(
    'baseDelayMs',
    options.baseDelayMs,
    CLIENT_DEFAULTS.baseDelayMs,
    0,
  );
  const maxDelayMs = positiveInt('maxDelayMs', options.maxDelayMs, CLIENT_DEFAULTS.maxDelayMs, 0);
  if (maxDelayMs < baseDelayMs)
    throw new InvalidArgumentError(
      `options.maxDelayMs (${maxDelayMs}) must not be below options.baseDelayMs (${baseDelayMs})`,
    );
  const maxElapsedMs = positiveInt(
    'maxElapsedMs',
    options.maxElapsedMs,
    CLIENT_DEFAULTS.maxElapsedMs,
  );
  const attemptTimeoutMs = positiveInt(
    'attemptTimeoutMs',
    options.attemptTimeoutMs,
    CLIENT_DEFAULTS.attemptTimeoutMs,
  );
  const maxAnswerBytes = positiveInt(
    'maxAnswerBytes',
    options.maxAnswerBytes,
    CLIENT_DEFAULTS.maxAnswerBytes,
  );
  const extraHeaders: Record<string, string> = {};
  if (options.headers !== undefined) {
    if (typeof options.headers !== 'object' || options.headers === null)
      throw new InvalidArgumentError(
        `options.headers must be an object (got ${show(options.headers)})`,
      );
    for (const [name, value] of Object.entries(options.headers)) {
      if (!TOKEN_HEADER_RE.test(name.toLowerCase()) || typeof value !== 'string')
        throw new InvalidArgumentError(
          `options.headers must map header names to strings (got ${show(name)}: ${show(value)})`,
        );
      extraHeaders[name.toLowerCase()] = value;
    }
  }
  const fn = (name: string, value: unknown) => {
    if (value !== undefined && typeof value !== 'function')
      throw new InvalidArgumentError(`options.${name} must be a function (got ${show(value)})`);
  };
  fn('fetch', options.fetch);
  fn('sleep', options.sleep);
  fn('random', options.random);
  if (
    options.clock !== undefined &&
    (typeof options.clock !== 'object' ||
      options.clock === null ||
      typeof options.clock.now !== 'function')
  )
    throw new InvalidArgumentError('options.clock must be an object with now()');
  const doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  const clock = options.clock ?? { now: () => Date.now() };
  const sleep = options.sleep ?? realSleep;
  const random = options.random ?? Math.random;

  const errorOptions = (
    attempts: number,
    p: Prepared,
    statusCode?: number,
    cause?: unknown,
  ): CallbackClientErrorOptions => ({ attempts, dedupKey: p.dedupKey, statusCode, cause });

  /** Sends one attempt and classifies its answer. */
  async function attempt(p: Prepared, attempts: number, budgetMs: number): Promise<Attempt> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(p.signal!.reason);
    p.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(
      () => controller.abort(new AttemptTimedOut()),
      Math.max(1, Math.min(attemptTimeoutMs, budgetMs)),
    );
    const now = clock.now();
    const headers = {
      ...p.headers,
      ...authHeaders(auth, {
        method: 'POST',
        target: p.target,
        headers: p.headers,
        body: p.body,
        timestamp: Math.floor(now / 1000),
      }),
    };
    try {
      let res: Response;
      try {
        res = await doFetch(p.url, {
          method: 'POST',
          headers,
          body: p.body,
          // A signed report goes only where it was sent.
          redirect: 'manual',
          signal: controller.signal,
        });
      } catch (err) {
        if (p.signal?.aborted)
          throw new ReportAbortedError(errorOptions(attempts, p, undefined, p.signal.reason));
        return { retry: networkReason(err, controller.signal), retryAfterMs: undefined };
      }
      const statusCode = res.status;
      let text: string;
      try {
        text = await readBounded(res, maxAnswerBytes);
      } catch (err) {
        if (p.signal?.aborted)
          throw new ReportAbortedError(errorOptions(attempts, p, statusCode, p.signal.reason));
        if (err instanceof AnswerTooLarge)
          throw new ReportBadAnswerError(
            `${p.url} answered ${statusCode} with more than ${maxAnswerBytes} bytes (options.maxAnswerBytes)`,
            errorOptions(attempts, p, statusCode),
          );
        return {
          retry: `the answer (${statusCode}) broke off: ${networkReason(err, controller.signal)}`,
          retryAfterMs: undefined,
          statusCode,
        };
      }
      let body: unknown;
      try {
        body = text.length === 0 ? undefined : JSON.parse(text);
      } catch {
        body = undefined;
      }
      if (
        RETRYABLE.has(statusCode) ||
        (statusCode >= 500 && statusCode !== 501 && statusCode !== 505)
      )
        return {
          retry: `${p.url} answered ${statusCode}${describe(body)}`,
          retryAfterMs: parseRetryAfter(res.headers.get('retry-after'), clock.now()),
          statusCode,
        };
      return { done: classify(p, statusCode, res.headers.get(OUTCOME_HEADER), body, attempts) };
    } finally {
      clearTimeout(timer);
      p.signal?.removeEventListener('abort', onAbort);
    }
  }

  function classify(
    p: Prepared,
    statusCode: number,
    outcome: string | null,
    body: unknown,
    attempts: number,
  ): ReportResult {
    const answer = asAnswer(body);
    const result = (kind: ReportKind): ReportResult => {
      if (!answer)
        throw new ReportBadAnswerError(
          `${p.url} answered ${statusCode} without a callback answer (${describe(body) || 'no JSON body'}): is the URL a callback-engine service?`,
          errorOptions(attempts, p, statusCode),
        );
      return {
        kind,
        status: answer.status as AnswerStatus | 'queued',
        data: answer.data,
        token: answer.token,
        attempts,
        statusCode,
        dedupKey: p.dedupKey,
      };
    };
    if (statusCode === 200) {
      if (outcome === 'applied' || outcome === 'ignored' || outcome === 'replayed')
        return result(outcome);
      // A service (or a proxy) that drops the header: a 200 to a report means it took effect.
      if (outcome === null) return result('applied');
      throw new ReportBadAnswerError(
        `${p.url} answered 200 with Callback-Outcome ${show(outcome)}, not a report's outcome`,
        errorOptions(attempts, p, statusCode),
      );
    }
    if (statusCode === 202) return result('queued');
    if (
      statusCode === 409 &&
      (outcome === 'conflict' || (isObject(body) && body.code === 'CBE_ERR_ALREADY_SETTLED'))
    )
      return result('conflict');
    if (
      statusCode === 404 &&
      (outcome === 'notFound' || (isObject(body) && body.code === 'CBE_ERR_NOT_FOUND'))
    )
      return result('notFound');
    if (statusCode >= 300 && statusCode < 400)
      throw new ReportBadAnswerError(
        `${p.url} answered a redirect (${statusCode}); redirects are not followed`,
        errorOptions(attempts, p, statusCode),
      );
    const code = isObject(body) && typeof body.code === 'string' ? body.code : undefined;
    throw new ReportRefusedError(
      `${p.url} refused the report with ${statusCode}${describe(body)}`,
      code,
      body,
      errorOptions(attempts, p, statusCode),
    );
  }

  /** Sends until a definite answer, within the attempt and time bounds. */
  async function send(p: Prepared): Promise<ReportResult> {
    const started = clock.now();
    let last: { reason: string; statusCode?: number | undefined } = { reason: 'nothing sent' };
    for (let attempts = 1; ; attempts++) {
      if (p.signal?.aborted)
        throw new ReportAbortedError(
          errorOptions(attempts - 1, p, last.statusCode, p.signal.reason),
        );
      const budget = maxElapsedMs - (clock.now() - started);
      const outcome = await attempt(p, attempts, budget);
      if ('done' in outcome) return outcome.done;
      last = { reason: outcome.retry, statusCode: outcome.statusCode };
      const giveUp = (why: string) =>
        new ReportUnavailableError(
          `the report got no definite answer in ${attempts} attempt${attempts === 1 ? '' : 's'} (${why}); last: ${outcome.retry}. Send it again later with dedupKey ${show(p.dedupKey)}`,
          errorOptions(attempts, p, outcome.statusCode),
        );
      if (attempts >= maxAttempts) throw giveUp(`maxAttempts ${maxAttempts}`);
      const delay = nextDelay(attempts, outcome.retryAfterMs, baseDelayMs, maxDelayMs, random());
      const left = maxElapsedMs - (clock.now() - started);
      if (delay >= left)
        throw giveUp(
          outcome.retryAfterMs !== undefined && outcome.retryAfterMs >= left
            ? `Retry-After asks for ${outcome.retryAfterMs} ms, past the time budget maxElapsedMs ${maxElapsedMs}`
            : `time budget maxElapsedMs ${maxElapsedMs}`,
        );
      try {
        await sleep(delay, p.signal);
      } catch (err) {
        if (p.signal?.aborted)
          throw new ReportAbortedError(
            errorOptions(attempts, p, outcome.statusCode, p.signal.reason),
          );
        throw err;
      }
    }
  }

  function checkSignal(signal: unknown): AbortSignal | undefined {
    if (signal === undefined) return undefined;
    if (!(signal instanceof AbortSignal))
      throw new InvalidArgumentError(`options.signal must be an AbortSignal (got ${show(signal)})`);
    return signal;
  }

  function checkStatus(status: unknown): ReportStatus {
    if (typeof status !== 'string' || !(DISPATCH_STATUSES as readonly string[]).includes(status))
      throw new InvalidArgumentError(
        `status must be one of ${DISPATCH_STATUSES.join(', ')} (got ${show(status)})`,
      );
    return status as ReportStatus;
  }

  function jsonBody(what: string, value: unknown): string {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw new InvalidArgumentError(`${what} must be JSON-serializable`, { cause: err });
    }
    if (text === undefined) throw new InvalidArgumentError(`${what} must be JSON-serializable`);
    return text;
  }

  return {
    async report<TData extends object>(
      target: string,
      status: ReportStatus,
      data?: Readonly<Record<string, unknown>>,
      reportOptions: ReportOptions = {},
    ): Promise<ReportResult<TData>> {
      if (typeof target !== 'string' || target.length === 0)
        throw new InvalidArgumentError(
          `target must be a callback URL or a token (got ${show(target)})`,
        );
      checkStatus(status);
      if (data !== undefined && !isObject(data))
        throw new InvalidArgumentError(`report data must be a JSON object (got ${show(data)})`);
      const signal = checkSignal(reportOptions.signal);
      const dedupKey = reportOptions.dedupKey ?? randomUUID();
      if (typeof dedupKey !== 'string' || dedupKey.length === 0 || dedupKey.length > 200)
        throw new InvalidArgumentError(
          `options.dedupKey must be a string of 1 to 200 characters (got ${show(dedupKey)})`,
        );
      let callbackUrl: string;
      if (/^https?:\/\//i.test(target)) callbackUrl = checkUrl('the callback URL', target);
      else if (baseUrl === undefined)
        throw new InvalidArgumentError(
          'reporting by token needs options.baseUrl (or pass the callback URL the service handed out)',
        );
      else callbackUrl = `${baseUrl}/callbacks/${encodeURIComponent(target)}`;
      const url = new URL(`${callbackUrl}/${status}`);
      const prepared: Prepared = {
        url: url.href,
        target: url.pathname + url.search,
        headers: {
          ...extraHeaders,
          accept: 'application/json',
          'content-type': 'application/json',
          [DEDUP_HEADER]: dedupKey,
        },
        body: jsonBody('report data', data ?? {}),
        dedupKey,
        signal,
      };
      return (await send(prepared)) as ReportResult<TData>;
    },

    async sendEvent<TData extends object>(
      event: CallbackEventInput,
      eventOptions: EventOptions = {},
    ): Promise<ReportResult<TData>> {
      if (!isObject(event)) throw new InvalidArgumentError('sendEvent needs an event object');
      const mode = eventOptions.mode ?? 'structured';
      if (mode !== 'structured' && mode !== 'binary')
        throw new InvalidArgumentError(
          `options.mode must be 'structured' or 'binary' (got ${show(mode)})`,
        );
      const signal = checkSignal(eventOptions.signal);
      const text = (name: string, value: unknown, required: boolean): string | undefined => {
        if (value === undefined && !required) return undefined;
        if (typeof value !== 'string' || value.length === 0)
          throw new InvalidArgumentError(
            `event.${name} must be a non-empty string (got ${show(value)})`,
          );
        return value;
      };
      const id = text('id', event.id ?? randomUUID(), true)!;
      const attributes: Record<string, string | number | boolean> = {
        specversion: '1.0',
        id,
        source: text('source', event.source, true)!,
        type: text('type', event.type, true)!,
      };
      const subject = text('subject', event.subject, false);
      if (subject !== undefined) attributes.subject = subject;
      const time = text('time', event.time, false);
      if (time !== undefined) attributes.time = time;
      const extensions: Record<string, string | number | boolean> = {};
      if (event.extensions !== undefined) {
        if (!isObject(event.extensions))
          throw new InvalidArgumentError('event.extensions must be an object');
        for (const [name, value] of Object.entries(event.extensions)) {
          if (!EXTENSION_RE.test(name) || CONTEXT_ATTRIBUTES.has(name))
            throw new InvalidArgumentError(
              `event.extensions: ${show(name)} is not an extension attribute name (lower-case letters and digits, not a context attribute)`,
            );
          if (!(
            typeof value === 'string' ||
            typeof value === 'boolean' ||
            (typeof value === 'number' && Number.isFinite(value))
          ))
            throw new InvalidArgumentError(
              `event.extensions.${name} must be a string, number or boolean (got ${show(value)})`,
            );
          extensions[name] = value;
        }
      }
      const token = text('callbackToken', event.callbackToken, false);
      if (token !== undefined) extensions.callbacktoken = token;
      const callbackId = text('callbackId', event.callbackId, false);
      if (callbackId !== undefined) extensions.callbackid = callbackId;
      if (event.callbackStatus !== undefined)
        extensions.callbackstatus = checkStatus(event.callbackStatus);
      let url: string;
      if (eventOptions.url !== undefined) url = checkUrl('options.url', String(eventOptions.url));
      else if (baseUrl === undefined)
        throw new InvalidArgumentError('sendEvent needs options.baseUrl or a url for the event');
      else url = `${baseUrl}/events`;
      const parsed = new URL(url);
      let headers: Record<string, string>;
      let body: string;
      if (mode === 'structured') {
        const whole: Record<string, unknown> = { ...attributes, ...extensions };
        if (event.data !== undefined) {
          whole.datacontenttype = 'application/json';
          whole.data = event.data;
        }
        body = jsonBody('event', whole);
        headers = { 'content-type': 'application/cloudevents+json; charset=utf-8' };
      } else {
        headers = {};
        for (const [name, value] of Object.entries({ ...attributes, ...extensions }))
          headers[`ce-${name}`] = headerValue(String(value));
        body = event.data === undefined ? '' : jsonBody('event.data', event.data);
        if (body !== '') headers['content-type'] = 'application/json';
      }
      const prepared: Prepared = {
        url: parsed.href,
        target: parsed.pathname + parsed.search,
        headers: { ...extraHeaders, accept: 'application/json', ...headers },
        body,
        dedupKey: id,
        signal,
      };
      return (await send(prepared)) as ReportResult<TData>;
    },
  };
}

/** Percent-encodes what a CloudEvents binary-mode header value must not carry as is. */
function headerValue(value: string): string {
  return value.replace(/[^\x21-\x7e]|["%]/gu, (c) => encodeURIComponent(c));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The callback answer in a body: `{ status, token?, data? }`. */
function asAnswer(
  body: unknown,
):
  | { status: string; token: string | undefined; data: Readonly<Record<string, unknown>> }
  | undefined {
  if (!isObject(body) || typeof body.status !== 'string') return undefined;
  return {
    status: body.status,
    token: typeof body.token === 'string' ? body.token : undefined,
    data: isObject(body.data) ? body.data : {},
  };
}

/** `: CODE message` of an error body, cut short, for messages. */
function describe(body: unknown): string {
  if (!isObject(body)) return '';
  const code = typeof body.code === 'string' ? body.code : '';
  const message = typeof body.message === 'string' ? body.message.slice(0, 300) : '';
  return code || message ? `: ${[code, message].filter(Boolean).join(' ')}` : '';
}

/** Why a request got no answer: timed out, or the network error's code. */
function networkReason(err: unknown, signal: AbortSignal): string {
  if (signal.aborted && signal.reason instanceof AttemptTimedOut) return 'no answer in time';
  const e = err as { cause?: { code?: unknown; message?: unknown }; message?: unknown };
  const cause = e?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return typeof e?.message === 'string' ? e.message : String(err);
}

/** Reads a body as UTF-8 text, refusing (and cancelling) one over `max` bytes. */
async function readBounded(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => {});
    throw new AnswerTooLarge();
  }
  if (!res.body) return '';
  const reader = res.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw new AnswerTooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
