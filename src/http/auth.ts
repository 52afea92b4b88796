/**
 * Optional authentication of the dispatch routes: bearer tokens and HMAC
 * signatures over the request's meaning (method, path with query, a timestamp,
 * the headers that select the callback, its status, its deduplication key or
 * how the body is read, and the raw body), both compared in constant time.
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
  /**
   * Equal for two checks that accept exactly the same credentials (a digest of the sorted token
   * digests, the sorted secrets' digests, the header and the window; never the secrets).
   */
  readonly key: string;
}

/** Prepares the auth check, or `undefined` when no auth is configured. */
export function authCheck(
  bearer: readonly string[] | undefined,
  hmac: ResolvedHmac | undefined,
  clock: Clock,
): AuthCheck | undefined {
  if (bearer === undefined && hmac === undefined) return undefined;
  const digests = bearer?.map(sha256);
  const hex = (list: readonly Buffer[]) => list.map((b) => b.toString('hex')).sort();
  const key = createHash('sha256')
    .update(
      JSON.stringify([
        digests ? hex(digests) : null,
        hmac
          ? [
              hex(hmac.secrets.map((s) => createHash('sha256').update(s).digest())),
              hmac.header,
              hmac.toleranceSeconds,
            ]
          : null,
      ]),
    )
    .digest('hex');
  return { bearer: digests, hmac, clock, key };
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

/** Request headers as {@link signRequest} takes them: a plain object, a `Headers`, or name-value pairs. */
export type SignedHeadersInput =
  | Readonly<Record<string, string | number | readonly string[] | undefined>>
  | Headers
  | Iterable<readonly [string, string]>;

/** What {@link signRequest} signs. */
export interface SignRequestInput {
  /**
   * The shared secret. Several (a rotation in progress) put one signature per secret in the
   * header, so a receiver that knows any of them accepts the request.
   */
  secret: string | Buffer | readonly (string | Buffer)[];
  /** The HTTP method, e.g. `POST` (upper-cased before signing). */
  method: string;
  /**
   * The request target exactly as sent on the request line: path and query,
   * e.g. `/hooks/callbacks/abc/complete?x=1` (with the mount path, if any).
   */
  path: string;
  /** The raw body; `''` or omitted for a request without one. */
  body?: string | Uint8Array | undefined;
  /**
   * The request headers, as sent (pass the same object you give `fetch`). The signature covers
   * `Content-Type`, `Callback-Dedup-Key` and every `ce-*` header among them, and their absence;
   * other headers are ignored.
   */
  headers?: SignedHeadersInput | undefined;
  /** Unix time in seconds. @default now (`Date.now()`) */
  timestamp?: number | undefined;
}

/** The signature scheme's version, as it appears in the header (`v2=<hex>`). */
const SCHEME = 'v2';

/** Whether a header is covered by signatures: what selects the callback, its status, its dedup key, or how the body is read. */
export function isSignedHeader(name: string): boolean {
  return name === 'content-type' || name === 'callback-dedup-key' || name.startsWith('ce-');
}

/** One header value as node:http gives it: trimmed, repeated values joined by `, `. */
function headerText(value: string | number | readonly string[]): string {
  return (typeof value === 'object' ? value.join(', ') : String(value)).trim();
}

/**
 * The covered headers as signed: `name:value\n` per covered header, names lower-cased, sorted.
 * Header names and values hold no line breaks (HTTP forbids them), so the block is unambiguous.
 */
function headerBlock(
  headers: Iterable<readonly [string, string | number | readonly string[] | undefined]>,
): string {
  const lines: string[] = [];
  for (const [rawName, value] of headers) {
    const name = rawName.toLowerCase();
    if (value === undefined || !isSignedHeader(name)) continue;
    lines.push(`${name}:${headerText(value)}\n`);
  }
  lines.sort();
  return lines.join('');
}

function entriesOf(
  headers: SignedHeadersInput | undefined,
): Iterable<readonly [string, string | number | readonly string[] | undefined]> {
  if (headers === undefined) return [];
  if (typeof Headers !== 'undefined' && headers instanceof Headers) return headers.entries();
  if (Symbol.iterator in headers) return headers as Iterable<readonly [string, string]>;
  return Object.entries(headers as Record<string, string | number | readonly string[] | undefined>);
}

/**
 * The bytes a signature covers, in this order, each line ending with `\n`: the scheme (`v2`), the
 * timestamp, the method, the request target, the covered headers (`name:value` lines), an empty
 * line, then the raw body.
 */
function digest(
  secret: Buffer | string,
  t: string,
  method: string,
  target: string,
  headers: string,
  body: string | Uint8Array,
): Buffer {
  return createHmac('sha256', secret)
    .update(`${SCHEME}\n${t}\n${method.toUpperCase()}\n${target}\n${headers}\n`, 'utf8')
    .update(body)
    .digest();
}

/**
 * Signs a request for a handler configured with `auth.hmac`: the value of the signature header
 * (default `Callback-Signature`), `t=<unix seconds>,v2=<hex>` (one `v2` per secret). The hex is
 * HMAC-SHA256 of the request's method, target (path and query), the timestamp, its
 * `Content-Type`, `Callback-Dedup-Key` and `ce-*` headers, and its raw body, so a captured
 * request cannot be replayed for another callback, status, deduplication key or event.
 *
 * @param input - secret(s), method, path with query, body, headers, timestamp.
 * @returns the header value.
 * @throws {@link InvalidArgumentError} for a missing secret, method or path, or a bad timestamp.
 * @example
 * ```ts
 * const body = JSON.stringify({ amount: 42 });
 * const path = `/callbacks/${token}/complete`;
 * const headers = { 'content-type': 'application/json', 'callback-dedup-key': 'pay-42' };
 * await fetch(`${base}${path}`, {
 *   method: 'POST',
 *   headers: {
 *     ...headers,
 *     'callback-signature': signRequest({ secret, method: 'POST', path, body, headers }),
 *   },
 *   body,
 * });
 * ```
 */
export function signRequest(input: SignRequestInput): string {
  const {
    secret,
    method,
    path,
    body = '',
    headers,
    timestamp = Math.floor(Date.now() / 1000),
  } = input;
  const secrets = (Array.isArray(secret) ? secret : [secret]) as readonly unknown[];
  if (
    secrets.length === 0 ||
    !secrets.every((s) => (typeof s === 'string' || Buffer.isBuffer(s)) && s.length > 0)
  )
    throw new InvalidArgumentError(
      'signRequest: secret must be a non-empty string or Buffer (or a non-empty list of them)',
    );
  if (typeof method !== 'string' || !/^[A-Za-z]+$/.test(method))
    throw new InvalidArgumentError('signRequest: method must be an HTTP method such as "POST"');
  if (typeof path !== 'string' || !path.startsWith('/') || /[\r\n]/.test(path))
    throw new InvalidArgumentError(
      `signRequest: path must start with "/" and hold no line break (got ${JSON.stringify(path)})`,
    );
  if (!Number.isSafeInteger(timestamp) || timestamp < 0)
    throw new InvalidArgumentError(
      `signRequest: timestamp must be whole Unix seconds (got ${String(timestamp)})`,
    );
  const t = String(timestamp);
  const block = headerBlock(entriesOf(headers));
  const signatures = (secrets as readonly (string | Buffer)[]).map(
    (k) => `${SCHEME}=${digest(k, t, method, path, block, body).toString('hex')}`,
  );
  return `t=${t},${signatures.join(',')}`;
}

/** The request target a client signed: Express keeps the unstripped one in `originalUrl`. */
function targetOf(req: IncomingMessage): string {
  const original = (req as IncomingMessage & { originalUrl?: unknown }).originalUrl;
  return typeof original === 'string' ? original : (req.url ?? '/');
}

/** A signature header that is present, well formed and fresh: its timestamp and its signatures. */
export interface SignatureClaim {
  readonly t: string;
  readonly given: readonly Buffer[];
}

/**
 * Reads the signature header of a request before its body: present, well formed, with a
 * timestamp inside the replay window. A request failing this is refused without reading its body.
 *
 * @returns the claim to verify once the body is read, or the 401 to answer.
 */
export function readSignature(
  hmac: ResolvedHmac,
  clock: Clock,
  req: IncomingMessage,
): SignatureClaim | HttpError {
  const value = req.headers[hmac.header];
  if (typeof value !== 'string' || value.length > MAX_SIGNATURE_HEADER)
    return signatureRefused(hmac.header, 'is missing');
  let t: string | undefined;
  let retired = false;
  const given: Buffer[] = [];
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (key === 't' && /^\d{1,12}$/.test(v)) t = v;
    else if (key === SCHEME && HEX64_RE.test(v)) given.push(Buffer.from(v, 'hex'));
    else if (key === 'v1') retired = true;
  }
  if (t !== undefined && given.length === 0 && retired)
    return signatureRefused(
      hmac.header,
      'carries only v1 signatures, which did not cover the request headers and are no longer accepted',
    );
  if (t === undefined || given.length === 0 || given.length > 8)
    return signatureRefused(hmac.header, 'is malformed');
  const skew = Math.abs(Math.floor(clock.now() / 1000) - Number(t));
  if (skew > hmac.toleranceSeconds) {
    return signatureRefused(
      hmac.header,
      `has a timestamp ${skew} s away from now, outside the replay window of ${hmac.toleranceSeconds} s`,
    );
  }
  return { t, given };
}

/**
 * Verifies a claim against the request's method, target, covered headers and raw body. Every
 * given signature is compared with every secret's HMAC (no early exit), in constant time.
 *
 * @returns `undefined` when it verifies, else the 401 to answer.
 */
export function verifySignature(
  hmac: ResolvedHmac,
  claim: SignatureClaim,
  req: IncomingMessage,
  body: Buffer,
): HttpError | undefined {
  const method = req.method ?? 'GET';
  const target = targetOf(req);
  const block = headerBlock(Object.entries(req.headers));
  let ok = false;
  for (const secret of hmac.secrets) {
    const expected = digest(secret, claim.t, method, target, block, body);
    for (const g of claim.given) if (timingSafeEqual(g, expected)) ok = true;
  }
  return ok ? undefined : signatureRefused(hmac.header, 'does not match the request');
}

/**
 * Checks the signature header of a request against its method, target, covered headers and raw
 * body: {@link readSignature}, then {@link verifySignature}.
 *
 * @returns `undefined` when it verifies, else the 401 to answer.
 */
export function checkSignature(
  hmac: ResolvedHmac,
  clock: Clock,
  req: IncomingMessage,
  body: Buffer,
): HttpError | undefined {
  const claim = readSignature(hmac, clock, req);
  return claim instanceof HttpError ? claim : verifySignature(hmac, claim, req, body);
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
    `header ${header} ${why}: send t=<unix seconds>,v2=<hex HMAC-SHA256 over the method, the path with query, the timestamp, the Content-Type, Callback-Dedup-Key and ce-* headers, and the raw body> (signRequest() from callback-engine/http builds it; give it the same headers you send)`,
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
