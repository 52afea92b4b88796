/**
 * The options of `createCallbackClient()`: their type, their defaults, and
 * `resolveClientOptions`, which checks every one when the client is created
 * and fills in the defaults (global `fetch`, `Date.now`, a real timer,
 * `Math.random`).
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import { checkUrl, show } from './checks.js';
import type { ClientAuth } from './sign.js';

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

/** A header name: an RFC 9110 token (lower-cased before the test). */
const TOKEN_HEADER_RE = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/** Client options after validation, with every default filled in. */
export interface ResolvedClientOptions {
  readonly baseUrl: string | undefined;
  readonly auth: ClientAuth;
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly maxElapsedMs: number;
  readonly attemptTimeoutMs: number;
  readonly maxAnswerBytes: number;
  /** Extra headers on every request, names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  readonly fetch: typeof fetch;
  readonly clock: ClientClock;
  readonly sleep: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  readonly random: () => number;
}

function positiveInt(name: string, value: unknown, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new InvalidArgumentError(
      `options.${name} must be an integer of at least ${min} (got ${show(value)})`,
    );
  return value;
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

/**
 * Checks a client's options, in order, and fills in the defaults.
 *
 * @throws `InvalidArgumentError` naming the first bad option and its value.
 */
export function resolveClientOptions(options: CallbackClientOptions): ResolvedClientOptions {
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
  return {
    baseUrl,
    auth,
    maxAttempts,
    baseDelayMs,
    maxDelayMs,
    maxElapsedMs,
    attemptTimeoutMs,
    maxAnswerBytes,
    headers: extraHeaders,
    fetch: doFetch,
    clock,
    sleep,
    random,
  };
}
