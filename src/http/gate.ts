/**
 * The one gate of an engine's HTTP surface: the dispatch routes, the OpenAPI document, the
 * dashboard (page, API, event stream) and `/metrics` make one auth decision per route, however
 * they are composed and mounted.
 *
 * - A dispatch handler records its auth against its engine when it is created.
 * - An admin part (dashboard, metrics) given no `auth` option takes the auth of its engine's
 *   dispatch handlers (and of the handler it wraps), looked up when a request arrives, so the
 *   order in which parts are created, wrapped or mounted does not matter.
 * - `auth: false` opens an admin part deliberately; `auth: {...}` gives it its own.
 * - An admin part that cannot tell which auth applies (its engine's dispatch handlers disagree,
 *   or it knows no engine) is refused when it is created, or when the dispatch handler that
 *   makes it ambiguous is created: at start-up, with a message that names the fix.
 *
 * Every handler of the surface carries the auth its routes require, so a wrapper finds it on the
 * handler it wraps, and passes it on.
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import type { AuthCheck } from './auth.js';

/** Where a handler of the surface keeps the auth its routes require (`null`: none, deliberately). */
const GATE = Symbol.for('callback-engine.http.gate');

/** What a handler carries: the auth its dispatch routes require, or `null` for none. */
export type CarriedAuth = AuthCheck | null;

/** Marks `handler` as part of the surface whose dispatch routes require `auth`; returns it. */
export function carryAuth<T extends object>(handler: T, auth: CarriedAuth | undefined): T {
  if (auth !== undefined) Object.defineProperty(handler, GATE, { value: auth });
  return handler;
}

/**
 * The auth a handler of the surface carries: an `AuthCheck`, `null` (a dispatch handler without
 * auth), or `undefined` when `handler` is not part of the surface (any other request handler).
 */
export function carriedAuth(handler: unknown): CarriedAuth | undefined {
  if (typeof handler !== 'function' && (typeof handler !== 'object' || handler === null))
    return undefined;
  return (handler as { [GATE]?: CarriedAuth })[GATE];
}

/** An admin part that takes its auth from the dispatch routes. */
interface Inheriting {
  /** How messages name it, e.g. `the dashboard`. */
  readonly what: string;
  readonly carried: AuthCheck | undefined;
}

/** What the gate knows of one engine. */
interface EngineGate {
  /** The auth of each of its dispatch handlers that has auth, by key. */
  readonly dispatch: Map<string, AuthCheck>;
  /** Its admin parts that take their auth from the dispatch routes. */
  readonly inheriting: Set<Inheriting>;
}

const engines = new WeakMap<object, EngineGate>();

function gateOf(engine: object): EngineGate {
  let g = engines.get(engine);
  if (!g) {
    g = { dispatch: new Map(), inheriting: new Set() };
    engines.set(engine, g);
  }
  return g;
}

/** The distinct auths an inheriting part could take, by key. */
function candidates(g: EngineGate | undefined, part: Inheriting): Map<string, AuthCheck> {
  const all = new Map(g?.dispatch);
  if (part.carried) all.set(part.carried.key, part.carried);
  return all;
}

function ambiguous(what: string, n: number): InvalidArgumentError {
  return new InvalidArgumentError(
    `${what} takes its auth from the engine's dispatch routes, but they are protected in ${n} different ways (dispatch handlers created with different auth options): give ${what} its own auth option (or auth: false to open it deliberately), or give every dispatch handler of the engine the same auth`,
  );
}

/**
 * Records the auth of a dispatch handler created for `engine`.
 *
 * @throws {@link InvalidArgumentError} when an admin part of the engine takes its auth from the
 *   dispatch routes and this auth differs from theirs (it could not tell which one applies).
 */
export function registerDispatchAuth(engine: object, auth: AuthCheck | undefined): void {
  if (auth === undefined) return;
  const g = gateOf(engine);
  if (g.dispatch.has(auth.key)) return;
  for (const part of g.inheriting) {
    const n = candidates(g, part);
    n.set(auth.key, auth);
    if (n.size > 1) throw ambiguous(part.what, n.size);
  }
  g.dispatch.set(auth.key, auth);
}

/** How an admin part decides on a request: the auth to require, or `undefined` for none. */
export type AdminAuth = () => AuthCheck | undefined;

/**
 * The auth of an admin part.
 *
 * @param what - how messages name the part, e.g. `withMetrics()`.
 * @param own - its `auth` option: `undefined` (take the dispatch routes'), `false` (none), or its own.
 * @param engine - the engine it shows, when known.
 * @param wrapped - what the handler it wraps carries (see {@link carriedAuth}).
 * @throws {@link InvalidArgumentError} when it takes the dispatch routes' auth but cannot tell which.
 */
export function adminAuth(
  what: string,
  own: AuthCheck | false | undefined,
  engine: object | undefined,
  wrapped: CarriedAuth | undefined,
): AdminAuth {
  if (own === false) return () => undefined;
  if (own !== undefined) return () => own;
  if (engine === undefined && wrapped === undefined)
    throw new InvalidArgumentError(
      `${what} cannot tell which auth protects the dispatch routes (it knows no engine and does not wrap a dispatch handler): give it an auth option, or auth: false to serve it without auth`,
    );
  const part: Inheriting = { what, carried: wrapped ?? undefined };
  const g = engine === undefined ? undefined : gateOf(engine);
  const n = candidates(g, part).size;
  if (n > 1) throw ambiguous(what, n);
  g?.inheriting.add(part);
  return () => {
    // At most one by construction (see registerDispatchAuth); read now, so creation order is free.
    for (const auth of candidates(g, part).values()) return auth;
    return undefined;
  };
}
