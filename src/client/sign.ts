/**
 * The one place the client authenticates a request: bearer token and HMAC
 * signature headers, built on the server's own `signRequest()`.
 *
 * @module
 */

import { signRequest } from '../http/auth.js';

/** Resolved credentials of a client. */
export interface ClientAuth {
  /** Sent as `Authorization: Bearer <token>`. */
  readonly bearer: string | undefined;
  readonly hmac:
    | {
        readonly secret: string | Buffer;
        /** Lower-cased header name. */
        readonly header: string;
      }
    | undefined;
}

/** One request as it goes on the wire, for signing. */
export interface SignableRequest {
  readonly method: string;
  /** The request target: path and query exactly as sent. */
  readonly target: string;
  /** The request headers chosen so far (lower-case names), besides the auth headers. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Unix time in seconds (from the client's clock). */
  readonly timestamp: number;
}

/**
 * The authentication headers of one attempt. Signed per attempt: the timestamp is fresh, so
 * a retry after a long backoff is still inside the service's replay window. The signature
 * covers the method, the target, the timestamp, the headers that select the callback, its
 * status and its deduplication key (`Content-Type`, `Callback-Dedup-Key`, CloudEvent `ce-*`
 * headers, all in `request.headers`) and the body: `signRequest()` picks them.
 */
export function authHeaders(auth: ClientAuth, request: SignableRequest): Record<string, string> {
  const out: Record<string, string> = {};
  if (auth.bearer !== undefined) out.authorization = `Bearer ${auth.bearer}`;
  if (auth.hmac !== undefined) {
    out[auth.hmac.header] = signRequest({
      secret: auth.hmac.secret,
      method: request.method,
      path: request.target,
      body: request.body,
      headers: request.headers,
      timestamp: request.timestamp,
    });
  }
  return out;
}
