/**
 * Optional authentication of the dispatch routes: bearer tokens and HMAC
 * signatures over the raw body, both compared in constant time.
 *
 * @module
 */

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { ResolvedHandlerOptions } from './options.js';
import { HttpError } from './respond.js';

const REALM = 'callback-engine';
const HEX_SIG_RE = /^(?:sha256=)?([0-9a-fA-F]{64})$/;

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Digests of the configured bearer tokens, computed once. */
export interface BearerCheck {
  readonly digests: readonly Buffer[];
}

/** Prepares the bearer check of resolved options, or `undefined` when bearer auth is off. */
export function bearerCheck(o: ResolvedHandlerOptions): BearerCheck | undefined {
  return o.bearer === undefined ? undefined : { digests: o.bearer.map(sha256) };
}

/**
 * Whether `Authorization: Bearer <token>` names a configured token. Hashing
 * both sides gives equal lengths, so `timingSafeEqual` applies; every
 * configured token is compared (no early exit).
 */
export function bearerOk(check: BearerCheck, headers: IncomingHttpHeaders): boolean {
  const header = headers.authorization;
  if (header === undefined) return false;
  const m = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
  if (!m) return false;
  const given = sha256(m[1]!);
  let ok = false;
  for (const d of check.digests) if (timingSafeEqual(given, d)) ok = true;
  return ok;
}

/**
 * Whether the signature header carries the HMAC-SHA256 of `body` under one of
 * the secrets (hex, optionally `sha256=`-prefixed).
 */
export function signatureOk(
  hmac: NonNullable<ResolvedHandlerOptions['hmac']>,
  headers: IncomingHttpHeaders,
  body: Buffer,
): boolean {
  const value = headers[hmac.header];
  if (typeof value !== 'string') return false;
  const m = HEX_SIG_RE.exec(value.trim());
  if (!m) return false;
  const given = Buffer.from(m[1]!, 'hex');
  let ok = false;
  for (const secret of hmac.secrets) {
    if (timingSafeEqual(given, createHmac('sha256', secret).update(body).digest())) ok = true;
  }
  return ok;
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

/** The 401 for a missing or wrong body signature. */
export function signatureRefused(header: string): HttpError {
  return new HttpError(
    'CBE_ERR_UNAUTHORIZED',
    401,
    `header ${header} must carry the hex HMAC-SHA256 of the raw body (optionally prefixed "sha256=")`,
    {
      'www-authenticate': `Signature realm="${REALM}", algorithm="hmac-sha256", headers="${header}"`,
    },
  );
}
