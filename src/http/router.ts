/**
 * Path matching of the Dispatch Callback Service: a fixed, small route table,
 * matched by splitting the path (no regular expressions over user input).
 *
 * @module
 */

import { InvalidMessageError } from '../errors.js';

/** The routes, by name. */
export type RouteName = 'openapi' | 'callbacks' | 'callback' | 'callbackUrl' | 'events';

/** A matched route with its decoded path parameters. */
export interface RouteMatch {
  readonly name: RouteName;
  readonly token: string;
  readonly status: string;
}

/** Methods each route answers; everything else is a 405 with this as `Allow`. */
export const ALLOWED: Readonly<Record<RouteName, readonly string[]>> = Object.freeze({
  openapi: ['GET', 'HEAD', 'OPTIONS'],
  callbacks: ['POST', 'OPTIONS'],
  callback: ['GET', 'HEAD', 'OPTIONS'],
  callbackUrl: ['POST', 'OPTIONS'],
  events: ['POST', 'OPTIONS'],
});

/** The path part of a request target (origin-form or absolute-form), without query or fragment. */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  let path = url;
  if (!path.startsWith('/')) {
    // Absolute-form (proxies) or asterisk-form: only an http(s) URL has a usable path.
    const m = /^https?:\/\/[^/?#]*(\/[^?#]*)?/i.exec(path);
    path = m ? (m[1] ?? '/') : '';
  }
  const q = path.search(/[?#]/);
  return q === -1 ? path : path.slice(0, q);
}

function decode(segment: string): string {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InvalidMessageError('the request path holds malformed percent-encoding');
  }
}

/**
 * Matches a path against the route table under `basePath`. A single trailing
 * slash is tolerated.
 *
 * @returns the route, or `undefined` when no route has this path.
 * @throws {@link InvalidMessageError} when a path parameter is not valid percent-encoding.
 */
export function matchRoute(path: string, basePath: string): RouteMatch | undefined {
  if (basePath !== '') {
    if (
      !path.startsWith(basePath) ||
      (path.length > basePath.length && path[basePath.length] !== '/')
    ) {
      return undefined;
    }
    path = path.slice(basePath.length);
  }
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  if (path === '/callbacks') return { name: 'callbacks', token: '', status: '' };
  if (path === '/events') return { name: 'events', token: '', status: '' };
  if (path === '/openapi.json') return { name: 'openapi', token: '', status: '' };
  if (!path.startsWith('/callbacks/')) return undefined;
  const rest = path.slice('/callbacks/'.length);
  const slash = rest.indexOf('/');
  if (slash === -1)
    return rest === '' ? undefined : { name: 'callback', token: decode(rest), status: '' };
  const token = rest.slice(0, slash);
  const status = rest.slice(slash + 1);
  if (token === '' || status === '' || status.includes('/')) return undefined;
  return { name: 'callbackUrl', token: decode(token), status: decode(status) };
}
