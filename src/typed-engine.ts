/**
 * Typed engines: the handles' runtime (`anchorHandle()`, which refuses another anchor's token)
 * and {@link typedEngine}, an engine whose `create()` takes only its declared anchors' names.
 * The types they return live in `typed-anchor.ts`.
 *
 * @module
 */

import type { CallbackEngine } from './callback-engine.js';
import type { DispatchStatus } from './lifecycle/statuses.js';
import { InvalidArgumentError } from './errors.js';
import type { CreateOptions } from './options/create.js';
import { toError } from './thrown.js';
import { decodeToken } from './token.js';
import type {
  AnchorHandle,
  AnyAnchorHandle,
  Token,
  TypedAnswer,
  TypedCallback,
  TypedCreateArgs,
  TypesOf,
} from './typed-anchor.js';
import type { WaitOptions } from './types.js';

/**
 * An engine whose anchors are declared through handles (see {@link typedEngine}): `create()`
 * takes only their names (a typo is a compile error) and checks the data by the anchor's types;
 * `get()`, `wait()` and `cancel()` answer typed by the token's anchor. Everything else is the
 * engine's own.
 */
export interface TypedEngine<H extends AnyAnchorHandle> extends Omit<
  CallbackEngine,
  'create' | 'get' | 'wait' | 'cancel'
> {
  /** Like {@link CallbackEngine.create}, for a declared anchor. */
  create<N extends H['name']>(
    anchor: N,
    ...args: TypedCreateArgs<TypesOf<H, N>>
  ): Promise<TypedCallback<TypesOf<H, N>, N>>;
  /** Like {@link CallbackEngine.get}, typed by the token's anchor. */
  get<N extends H['name']>(token: Token<N>): Promise<TypedAnswer<TypesOf<H, N>, N>>;
  /** Like {@link CallbackEngine.wait}, typed by the token's anchor. */
  wait<N extends H['name']>(
    token: Token<N>,
    options?: WaitOptions,
  ): Promise<TypedAnswer<TypesOf<H, N>, N>>;
  /** Like {@link CallbackEngine.cancel}, typed by the token's anchor. */
  cancel<N extends H['name']>(
    token: Token<N>,
    data?: Record<string, unknown>,
  ): Promise<TypedAnswer<TypesOf<H, N>, N>>;
}

/** What a handle needs from the engine. */
type HandleHost = Pick<CallbackEngine, 'create' | 'dispatch' | 'get' | 'wait' | 'cancel'>;

/** The engine each handle was made by. */
const hostOf = new WeakMap<object, HandleHost>();

/** Refuses a token that names another anchor (a plain string: the types could not). */
function checkAnchor(name: string, token: string): string {
  const fields = decodeToken(token);
  if (fields !== undefined && fields.anchor !== name)
    throw new InvalidArgumentError(
      `the handle of anchor ${JSON.stringify(name)} was given a token of anchor ${JSON.stringify(fields.anchor.slice(0, 100))}`,
    );
  return token;
}

/** The handle of anchor `name` (frozen; holds nothing but the name). */
export function anchorHandle(engine: HandleHost, name: string): AnchorHandle<never, never> {
  const guard = <R>(token: string, run: (token: string) => Promise<R>): Promise<R> => {
    try {
      return run(checkAnchor(name, token));
    } catch (err) {
      return Promise.reject(toError(err));
    }
  };
  const handle = Object.freeze({
    name,
    create: (options?: CreateOptions) => engine.create(name, options),
    report: (token: string, status: DispatchStatus, data?: object) =>
      guard(token, (t) =>
        engine.dispatch({
          type: 'CALLBACK',
          callbackToken: t,
          callbackStatus: status,
          ...(data === undefined ? {} : { callbackData: data as Record<string, unknown> }),
        }),
      ),
    get: (token: string) => guard(token, (t) => engine.get(t)),
    wait: (token: string, options?: WaitOptions) => guard(token, (t) => engine.wait(t, options)),
    cancel: (token: string, data?: Record<string, unknown>) =>
      guard(token, (t) => engine.cancel(t, data)),
  });
  hostOf.set(handle, engine);
  return handle as unknown as AnchorHandle<never, never>;
}

/**
 * The engine typed by the handles of its anchors: `create()` takes only their names (a typo is a
 * compile error) and every answer is typed by its anchor's types. It is the same engine object:
 * nothing is wrapped.
 * @param engine - the engine the handles were made by.
 * @param handles - what `engine.anchor()` returned for each anchor to declare.
 * @returns `engine`, typed.
 * @throws `InvalidArgumentError` for a handle another engine made (or not a handle).
 * @example
 * ```ts
 * const base = createCallbackEngine({ secrets: [secret] });
 * const order = base.anchor('order', { data: z.object({ orderId: z.number() }) });
 * const payment = base.anchor('payment');
 * const engine = typedEngine(base, order, payment);
 * const cb = await engine.create('order', { data: { orderId: 1 } }); // engine.create('ordr') does not compile
 * const answer = await engine.wait(cb.token); // typed by order's types
 * ```
 */
export function typedEngine<const H extends readonly AnyAnchorHandle[]>(
  engine: CallbackEngine,
  ...handles: H
): TypedEngine<H[number]> {
  for (const [i, h] of handles.entries()) {
    if (typeof h !== 'object' || h === null || hostOf.get(h) !== engine)
      throw new InvalidArgumentError(
        `typedEngine() handles[${i}] is not the handle of an anchor of this engine (pass what engine.anchor() returned)`,
      );
  }
  return engine as unknown as TypedEngine<H[number]>;
}
