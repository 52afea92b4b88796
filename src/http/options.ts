/**
 * Options of the Dispatch Callback Service, their frozen defaults and their
 * eager validation.
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import type { ResolvedHmac } from './auth.js';

/**
 * Optional authentication of every route of the service, for every method: the dispatch routes,
 * `/openapi.json`, and the dashboard and `/metrics` mounted with it (unless they are given auth
 * of their own).
 */
export interface DispatchAuthOptions {
  /**
   * Accepted bearer tokens (`Authorization: Bearer ...`); several allow rotation.
   * Compared in constant time. With `hmac` also set, a request needs both.
   */
  bearer?: string | readonly string[];
  /**
   * Signed requests, in the style of Stripe's signatures: the header carries
   * `t=<unix seconds>,v2=<hex>`, the hex being HMAC-SHA256 of the method, the
   * path with query as sent, the timestamp, the `Content-Type`,
   * `Callback-Dedup-Key` and `ce-*` headers (whatever selects the callback, its
   * status or its deduplication key outside the body), and the raw body.
   * `signRequest()` builds it. Several secrets allow rotation; compared in
   * constant time. With `bearer` also set, a request needs both. The raw body is
   * needed: mount the handler before any body parser.
   */
  hmac?: DispatchHmacOptions;
}

/** Options of HMAC request signatures. */
export interface DispatchHmacOptions {
  /** The shared secret(s); all verify (rotation). */
  secret: string | Buffer | readonly (string | Buffer)[];
  /** The header carrying the signature. @default 'callback-signature' */
  header?: string;
  /**
   * Replay window: how far (seconds) the signature's timestamp may be from the
   * engine clock's now, either way.
   * @default 300
   */
  toleranceSeconds?: number;
}

/** How CloudEvents may find their callback (spec 11.3, 16). */
export interface CloudEventsOptions {
  /**
   * Accept events that find their callback without its signed token (by
   * extension `callbackid` or an anchor's `correlate` keys) although the
   * handler has no `auth`. Anyone who knows or guesses an id or a correlation
   * value (an order number) could then drive that callback: only set it when
   * the network in front of the handler authenticates its callers.
   * With `auth` configured such events are accepted anyway.
   * @default false
   */
  trustCorrelation?: boolean;
}

/** Options of {@link createDispatchHandler}. */
export interface DispatchHandlerOptions {
  /**
   * A path prefix the routes live under, e.g. `/hooks` for `/hooks/callbacks`.
   * Not needed when a framework strips its mount path (Express `app.use('/hooks', handler)`).
   * @default ''
   */
  basePath?: string;
  /**
   * Largest request body read, in bytes; a larger one is refused with 413 while
   * streaming, without buffering it. Report data has its own (engine) limit.
   * @default 278528 (256 KiB of data + 16 KiB of envelope)
   */
  maxBodyBytes?: number;
  /**
   * Deepest nesting of arrays and objects accepted in a JSON body (400 beyond).
   * @default 64
   */
  maxJsonDepth?: number;
  /**
   * Most events accepted in one CloudEvents batch (400 beyond).
   * @default 100
   */
  maxBatchEvents?: number;
  /**
   * The `Retry-After` value (seconds) sent with a 503.
   * @default 1
   */
  retryAfterSeconds?: number;
  /** Authentication of the dispatch routes. @default none */
  auth?: DispatchAuthOptions;
  /**
   * Serve the OpenAPI document at `GET /openapi.json`.
   * @default true
   */
  openApi?: boolean;
  /** CloudEvents options. */
  cloudEvents?: CloudEventsOptions;
}

/** Every key of {@link DispatchHandlerOptions}, for the unknown-key check. */
export const HANDLER_OPTION_KEYS: readonly string[] = Object.freeze([
  'basePath',
  'maxBodyBytes',
  'maxJsonDepth',
  'maxBatchEvents',
  'retryAfterSeconds',
  'auth',
  'openApi',
  'cloudEvents',
]);

/** Handler options after validation. */
export interface ResolvedHandlerOptions {
  readonly basePath: string;
  readonly maxBodyBytes: number;
  readonly maxJsonDepth: number;
  readonly maxBatchEvents: number;
  readonly retryAfterSeconds: number;
  readonly bearer: readonly string[] | undefined;
  readonly hmac: ResolvedHmac | undefined;
  readonly openApi: boolean;
  /** Whether events found by `callbackid` or `correlate` keys are accepted. */
  readonly trustCorrelation: boolean;
}

/** Frozen defaults of the handler options. */
export const HTTP_DEFAULTS = Object.freeze({
  maxBodyBytes: 256 * 1024 + 16 * 1024,
  maxJsonDepth: 64,
  maxBatchEvents: 100,
  retryAfterSeconds: 1,
  hmacHeader: 'callback-signature',
  hmacToleranceSeconds: 300,
});

const HEADER_NAME_RE = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const BASE_PATH_RE = /^(\/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$/;

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

function positiveInt(
  name: string,
  value: unknown,
  fallback: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0 || value > max) {
    throw new InvalidArgumentError(
      `options.${name} must be an integer from 1 to ${max} (got ${show(value)})`,
    );
  }
  return value;
}

function list<T>(value: T | readonly T[]): readonly T[] {
  return Array.isArray(value) ? (value as readonly T[]) : [value as T];
}

/**
 * Validates auth options (of the handler, or of the dashboard).
 *
 * @throws {@link InvalidArgumentError} naming the first bad option and its value.
 */
export function resolveAuth(auth: unknown): Pick<ResolvedHandlerOptions, 'bearer' | 'hmac'> {
  if (auth === undefined) return { bearer: undefined, hmac: undefined };
  if (typeof auth !== 'object' || auth === null || Array.isArray(auth)) {
    throw new InvalidArgumentError(`options.auth must be an object (got ${show(auth)})`);
  }
  const a = auth as DispatchAuthOptions;
  checkKnownKeys('options.auth', a, ['bearer', 'hmac']);
  if (a.bearer === undefined && a.hmac === undefined) {
    throw new InvalidArgumentError('options.auth must set bearer, hmac, or both');
  }
  let bearer: readonly string[] | undefined;
  if (a.bearer !== undefined) {
    bearer = list(a.bearer);
    bearer.forEach((t: unknown, i) => {
      if (typeof t !== 'string' || t.length === 0 || !/^[\x21-\x7e]+$/.test(t)) {
        throw new InvalidArgumentError(
          `options.auth.bearer${Array.isArray(a.bearer) ? `[${i}]` : ''} must be a non-empty string of visible ASCII (got ${show(t)})`,
        );
      }
    });
    if (bearer.length === 0)
      throw new InvalidArgumentError('options.auth.bearer must not be an empty array');
    bearer = Object.freeze([...bearer]);
  }
  let hmac: ResolvedHandlerOptions['hmac'];
  if (a.hmac !== undefined) {
    if (typeof a.hmac !== 'object' || a.hmac === null) {
      throw new InvalidArgumentError(`options.auth.hmac must be an object (got ${show(a.hmac)})`);
    }
    checkKnownKeys('options.auth.hmac', a.hmac, ['secret', 'header', 'toleranceSeconds']);
    const secrets = list(a.hmac.secret).map((s: unknown, i) => {
      if (!((typeof s === 'string' || Buffer.isBuffer(s)) && s.length > 0)) {
        throw new InvalidArgumentError(
          `options.auth.hmac.secret${Array.isArray(a.hmac?.secret) ? `[${i}]` : ''} must be a non-empty string or Buffer (got ${show(s)})`,
        );
      }
      return typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s);
    });
    if (secrets.length === 0)
      throw new InvalidArgumentError('options.auth.hmac.secret must not be an empty array');
    const header = a.hmac.header ?? HTTP_DEFAULTS.hmacHeader;
    if (typeof header !== 'string' || !HEADER_NAME_RE.test(header)) {
      throw new InvalidArgumentError(
        `options.auth.hmac.header must be an HTTP header name (got ${show(header)})`,
      );
    }
    const toleranceSeconds = positiveInt(
      'auth.hmac.toleranceSeconds',
      a.hmac.toleranceSeconds,
      HTTP_DEFAULTS.hmacToleranceSeconds,
      86_400,
    );
    hmac = Object.freeze({
      secrets: Object.freeze(secrets),
      header: header.toLowerCase(),
      toleranceSeconds,
    });
  }
  return { bearer, hmac };
}

function resolveCloudEvents(value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`options.cloudEvents must be an object (got ${show(value)})`);
  }
  checkKnownKeys('options.cloudEvents', value, ['trustCorrelation']);
  const trust = (value as CloudEventsOptions).trustCorrelation;
  if (trust !== undefined && typeof trust !== 'boolean') {
    throw new InvalidArgumentError(
      `options.cloudEvents.trustCorrelation must be a boolean (got ${show(trust)})`,
    );
  }
  return trust ?? false;
}

/**
 * Validates handler options once, eagerly.
 *
 * @throws {@link InvalidArgumentError} naming the first bad option and its value.
 */
export function resolveHandlerOptions(
  input: DispatchHandlerOptions | undefined,
): ResolvedHandlerOptions {
  if (
    input !== undefined &&
    (typeof input !== 'object' || input === null || Array.isArray(input))
  ) {
    throw new InvalidArgumentError(`options must be an object (got ${show(input)})`);
  }
  const o = input ?? {};
  checkKnownKeys('handler options', o, HANDLER_OPTION_KEYS);
  const basePath = o.basePath ?? '';
  if (typeof basePath !== 'string' || (basePath !== '' && !BASE_PATH_RE.test(basePath))) {
    throw new InvalidArgumentError(
      `options.basePath must be empty or a path such as "/hooks" (leading slash, no trailing slash) (got ${show(basePath)})`,
    );
  }
  if (o.openApi !== undefined && typeof o.openApi !== 'boolean') {
    throw new InvalidArgumentError(`options.openApi must be a boolean (got ${show(o.openApi)})`);
  }
  return Object.freeze({
    basePath,
    maxBodyBytes: positiveInt('maxBodyBytes', o.maxBodyBytes, HTTP_DEFAULTS.maxBodyBytes),
    maxJsonDepth: positiveInt('maxJsonDepth', o.maxJsonDepth, HTTP_DEFAULTS.maxJsonDepth, 1000),
    maxBatchEvents: positiveInt(
      'maxBatchEvents',
      o.maxBatchEvents,
      HTTP_DEFAULTS.maxBatchEvents,
      10_000,
    ),
    retryAfterSeconds: positiveInt(
      'retryAfterSeconds',
      o.retryAfterSeconds,
      HTTP_DEFAULTS.retryAfterSeconds,
      86_400,
    ),
    ...resolveAuth(o.auth),
    openApi: o.openApi ?? true,
    trustCorrelation: resolveCloudEvents(o.cloudEvents),
  });
}
