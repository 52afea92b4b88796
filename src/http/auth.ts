/**
 * Optional authentication of the dispatch routes: bearer tokens and HMAC
 * signatures over the whole request (method, path with query, a timestamp
 * and the raw body), both compared in constant time.
 *
 * @module
 */

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Clock } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import { HttpError } from './respond.js';

const REALM = 'callback-engine';
const HEX64_RE = /^[0-9a-f]{64}$/i;
/** Longest signature header read; a longer one is refused unparsed. */
const MAX_SIGNATURE_HEADER = 2048;

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** HMAC settings after validation. */
export interface ResolvedHmac {
  readonly secrets: readonly Buffer[];
  /** Lower-cased header name. */
  readonly header: string;
  /** Accepted distance between the signature's timestamp and the clock, in seconds. */
  readonly toleranceSeconds: number;
}

/** Everything a request is authenticated with, prepared once per handler. */
export interface AuthCheck {
  /** SHA-256 digests of the accepted bearer tokens, or `undefined` when bearer auth is off. */
  readonly bearer: readonly Buffer[] | undefined;
  readonly hmac: ResolvedHmac | undefined;
  readonly clock: Clock;
}

/** Prepares the auth check, or `undefined` when no auth is configured. */
export function authCheck(
  bearer: readonly string[] | undefined,
  hmac: ResolvedHmac | undefined,
  clock: Clock,
): AuthCheck | undefined {
  if (bearer === undefined && hmac === undefined) return undefined;
  return { bearer: bearer?.map(sha256), hmac, clock };
}

/**
 * Whether `Authorization: Bearer <token>` names a configured token. Hashing
 * both sides gives equal lengths, so `timingSafeEqual` applies; every
 * configured token is compared (no early exit).
 */
export function bearerOk(digests: readonly Buffer[], headers: IncomingHttpHeaders): boolean {
  const header = headers.authorization;
  if (header === undefined) return false;
  const m = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
  if (!m) return false;
  const given = sha256(m[1]!);
  let ok = false;
  for (const d of digests) if (timingSafeEqual(given, d)) ok = true;
  return ok;
}

/** What {@link signRequest} signs. */
export interface SignRequestInput {
  /** The shared secret (the first of the handler's list when rotating). */
  secret: string | Buffer;
  /** The HTTP method, e.g. `POST` (upper-cased before signing). */
  method: string;
  /**
   * The request target exactly as sent on the request line: path and query,
   * e.g. `/hooks/callbacks/abc/complete?x=1` (with the mount path, if any).
   */
  path: string;
  /** The raw body; `''` or omitted for a request without one. */
  body?: string | Uint8Array;
  /** Unix time in seconds. @default now (`Date.now()`) */
  timestamp?: number;
}

/** The bytes an HMAC signature covers: `<t>.<METHOD>.<path?query>.<body>`. */
function digest(
  secret: Buffer | string,
  t: string,
  method: string,
  path: string,
  body: string | Uint8Array,
): Buffer {
  return createHmac('sha256', secret)
    .update(`${t}.${method.toUpperCase()}.${path}.`, 'utf8')
    .update(body)
    .digest();
}

/**
 * Signs a request for a handler configured with `auth.hmac`: the value of the
 * signature header (default `Callback-Signature`), `t=<unix seconds>,v1=<hex>`,
 * where the hex is HMAC-SHA256 of `<t>.<METHOD>.<path?query>.<raw body>`.
 *
 * @param input - secret, method, path with query, body, timestamp.
 * @returns the header value.
 * @throws {@link InvalidArgumentError} for a missing secret, method or path, or a bad timestamp.
 * @example
 * ```ts
 * const body = JSON.stringify({ amount: 42 });
 * const path = `/callbacks/${token}/complete`;
 * await fetch(`${base}${path}`, {
 *   method: 'POST',
 *   headers: {
 *     'content-type': 'application/json',
 *     'callback-signature': signRequest({ secret, method: 'POST', path, body }),
 *   },
 *   body,
 * });
 * ```
 */
export function signRequest(input: SignRequestInput): string {
  const { secret, method, path, body = '', timestamp = Math.floor(Date.now() / 1000) } = input;
  if (!((typeof secret === 'string' || Buffer.isBuffer(secret)) && secret.length > 0))
    throw new InvalidArgumentError('signRequest: secret must be a non-empty string or Buffer');
  if (typeof method !== 'string' || method.length === 0)
    throw new InvalidArgumentError('signRequest: method must be a non-empty string');
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new InvalidArgumentError(
      `signRequest: path must start with "/" (got ${JSON.stringify(path)})`,
    );
  if (!Number.isSafeInteger(timestamp) || timestamp < 0)
    throw new InvalidArgumentError(
      `signRequest: timestamp must be whole Unix seconds (got ${String(timestamp)})`,
    );
  const t = String(timestamp);
  return `t=${t},v1=${digest(secret, t, method, path, body).toString('hex')}`;
}

/** The request target a client signed: Express keeps the unstripped one in `originalUrl`. */
function targetOf(req: IncomingMessage): string {
  const original = (req as IncomingMessage & { originalUrl?: unknown }).originalUrl;
  return typeof original === 'string' ? original : (req.url ?? '/');
}

/**
 * Checks the signature header of a request against its method, target and raw
 * body. Every given `v1` is compared with every secret's HMAC (no early exit).
 *
 * @returns `undefined` when it verifies, else the 401 to answer.
 */
export function checkSignature(
  hmac: ResolvedHmac,
  clock: Clock,
  req: IncomingMessage,
  body: Buffer,
): HttpError | undefined {
  const value = req.headers[hmac.header];
  if (typeof value !== 'string' || value.length > MAX_SIGNATURE_HEADER)
    return signatureRefused(hmac.header, 'is missing');
  let t: string | undefined;
  const given: Buffer[] = [];
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (key === 't' && /^\d{1,12}$/.test(v)) t = v;
    else if (key === 'v1' && HEX64_RE.test(v)) given.push(Buffer.from(v, 'hex'));
  }
  if (t === undefined || given.length === 0 || given.length > 8)
    return signatureRefused(hmac.header, 'is malformed');
  const skew = Math.abs(Math.floor(clock.now() / 1000) - Number(t));
  if (skew > hmac.toleranceSeconds) {
    return signatureRefused(
      hmac.header,
      `has a timestamp ${skew} s away from now, outside the replay window of ${hmac.toleranceSeconds} s`,
    );
  }
  const method = req.method ?? 'GET';
  const target = targetOf(req);
  let ok = false;
  for (const secret of hmac.secrets) {
    const expected = digest(secret, t, method, target, body);
    for (const g of given) if (timingSafeEqual(g, expected)) ok = true;
  }
  return ok ? undefined : signatureRefused(hmac.header, 'does not match the request');
}

/**
 * Authenticates a request whose raw body is known: with both bearer and HMAC
 * configured, both must pass.
 *
 * @returns `undefined` when it passes, else the 401 to answer.
 */
export function authenticate(
  check: AuthCheck,
  req: IncomingMessage,
  body: Buffer,
): HttpError | undefined {
  if (check.bearer !== undefined && !bearerOk(check.bearer, req.headers))
    return bearerRefused(req.headers);
  if (check.hmac !== undefined) return checkSignature(check.hmac, check.clock, req, body);
  return undefined;
}

/** The 401 for a missing or wrong bearer token. */
export function bearerRefused(headers: IncomingHttpHeaders): HttpError {
  const presented = headers.authorization !== undefined;
  return new HttpError(
    'CBE_ERR_UNAUTHORIZED',
    401,
    presented
      ? 'the bearer token is not accepted'
      : 'this route needs Authorization: Bearer <token>',
    {
      'www-authenticate': presented
        ? `Bearer realm="${REALM}", error="invalid_token"`
        : `Bearer realm="${REALM}"`,
    },
  );
}

function challenge(header: string): Record<string, string> {
  return {
    'www-authenticate': `Signature realm="${REALM}", algorithm="hmac-sha256", headers="${header}"`,
  };
}

/** The 401 for a missing, malformed, stale or wrong signature. */
export function signatureRefused(header: string, why: string): HttpError {
  return new HttpError(
    'CBE_ERR_UNAUTHORIZED',
    401,
    `header ${header} ${why}: send t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<METHOD>.<path?query>.<raw body>"> (signRequest() from callback-engine/http builds it)`,
    challenge(header),
  );
}

/** The 401 for a signed request whose raw body a framework's body parser already consumed. */
export function parsedBodyRefused(header: string): HttpError {
  return new HttpError(
    'CBE_ERR_UNAUTHORIZED',
    401,
    'the request body was already parsed by a body parser (req.body is set, the raw bytes are gone), so its signature cannot be checked: mount the dispatch handler before express.json() or any other body parser, or give it the raw body (express.raw({ type: "*/*" }))',
    challenge(header),
  );
}
