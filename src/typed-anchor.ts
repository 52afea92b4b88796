/**
 * Typed anchors: `engine.anchor()` returns a handle whose `create({ data })`, `report()`,
 * `get()`, `wait()` and `cancel()` are type-checked and typed by the anchor's types, and whose
 * steps see `cb.data` and `cb.report` typed per status. The types come from a type argument
 * (`engine.anchor<{ name: 'order'; data: ...; reports: ... }>('order', ...)`) or are inferred
 * from the anchor's Standard Schemas (`data`, `reports`), which also check the data at run time.
 *
 * What the types say about `cb.data` holds at run time: a report cannot change a creation field
 * (it is refused with `CBE_ERR_INVALID_DATA`) unless the anchor lists it in `reportable`, and
 * such a field is typed as any JSON value. Tokens carry their anchor's name in their type
 * (`Token<'order'>`), so a token of one anchor cannot be handed to another's handle, and
 * {@link typedEngine} gives an engine whose `create()` takes only its declared anchors' names.
 *
 * @module
 */

import type { CallbackData, JsonValue } from './data.js';
import type { CallbackStatus, DispatchStatus, StepKey } from './lifecycle/statuses.js';
import type { AnchorOptions } from './options/anchor.js';
import type { CreateOptions } from './options/create.js';
import type { InferInput, InferOutput, ReportSchemas, StandardSchemaV1 } from './schema.js';
import type {
  CallbackAnswer,
  CreatedCallback,
  StepInput,
  StepOutput,
  WaitOptions,
  WorkerStep,
} from './types.js';

declare const anchorOf: unique symbol;
declare const typesOf: unique symbol;

/**
 * A callback token. `Token<'order'>` is a token of anchor `order`: what a handle's `create()`
 * returns and what its `report()`, `get()`, `wait()` and `cancel()` take. A plain `string` (a
 * token read back from a database or a request) is accepted everywhere, but a token typed for
 * one anchor is a compile error where another anchor's token is expected. Only a type: at run
 * time a token is the string it always was.
 */
export type Token<A extends string = string> = string & { readonly [anchorOf]?: A };

/** Report data types by status, or `'*'` for every status without its own. */
export type ReportTypes = { [S in DispatchStatus | '*']?: object };

/**
 * The data types of an anchor, given as its type argument:
 * `engine.anchor<{ data: { orderId: number }; reports: { progress: { pct: number } } }>('order', ...)`.
 */
export interface AnchorTypes {
  /**
   * The anchor's name, as passed to `engine.anchor()`: its tokens are then `Token<name>`. Without
   * it, tokens of this anchor are plain `Token` (the name cannot be inferred beside a type argument).
   */
  name?: string;
  /** The creation-data keys the anchor lists in its `reportable` option (a union of names). */
  reportable?: string;
  /** The creation data as steps see it. */
  data?: object;
  /** Report data as steps see it, by status (or `'*'`). */
  reports?: ReportTypes;
  /** The creation data as `create()` takes it, if a schema transforms it. @default `data` */
  dataInput?: object;
  /** Report data as `report()` takes it, if schemas transform it. @default `reports` */
  reportsInput?: ReportTypes;
}

type Loose = Readonly<Record<string, unknown>>;
/** The empty object type: `Empty extends T` when `T` has no required keys. */
type Empty = Record<never, never>;

/** The anchor name in a type argument, or `string`. */
export type NameOf<T> = T extends { name: infer N extends string } ? N : string;

/** The creation-data keys an anchor's types say reports may change. */
export type ReportableOf<T> = T extends { reportable?: infer R extends string } ? R : never;

/**
 * What a typed step sees as `cb.data`: the declared creation data, plus whatever else was merged.
 * A creation field listed in `reportable` may have been changed by a report: it is typed as any
 * JSON value (narrow it before use). The others hold at run time: a report that would change one
 * is refused.
 */
export type DataView<T> = T extends { data: infer D extends object }
  ? [ReportableOf<T>] extends [never]
    ? Readonly<D> & Loose
    : Readonly<
        Omit<D, ReportableOf<T>> & {
          [K in keyof D & ReportableOf<T>]: D[K] | JsonValue | undefined;
        }
      > &
        Loose
  : CallbackData;

/** The creation data `create()` takes. */
export type DataInput<T> = T extends { dataInput: infer D extends object }
  ? D
  : T extends { data: infer D extends object }
    ? D
    : Record<string, unknown>;

type Pick1<R, K> = K extends keyof R
  ? NonNullable<R[K]>
  : '*' extends keyof R
    ? NonNullable<R['*']>
    : undefined;

/** What a typed step for step key `K` sees as `cb.report`. */
export type ReportView<T, K> = T extends { reports: infer R }
  ? Pick1<R, K> extends infer P extends object
    ? Readonly<P>
    : CallbackData
  : CallbackData;

/** The report data `report()` takes for status `S`. */
export type ReportInput<T, S extends DispatchStatus> = T extends {
  reportsInput: infer R;
}
  ? Pick1<R, S> extends infer P extends object
    ? P
    : Record<string, unknown>
  : T extends { reports: infer R }
    ? Pick1<R, S> extends infer P extends object
      ? P
      : Record<string, unknown>
    : Record<string, unknown>;

type StatusOf<K> = K extends CallbackStatus | 'notFound' ? K : CallbackStatus | 'notFound';

/** A step of a typed anchor: `cb.data`, `cb.report` and `cb.status` typed for its key `K`. */
export type TypedStepFunction<T, K extends StepKey> = (
  input: StepInput<DataView<T>, ReportView<T, K>, StatusOf<K>>,
) => StepOutput | Promise<StepOutput>;

/** The step map of a typed anchor. */
export type TypedStepMap<T> = {
  [K in StepKey]?: TypedStepFunction<T, K> | WorkerStep | false;
};

/** Anchor options with typed steps. */
export type TypedAnchorOptions<T> = Omit<AnchorOptions, 'next' | 'reportable'> & {
  /** Steps by status (spec 6), typed by the anchor's data types. */
  next?: TypedStepMap<T>;
  /**
   * Creation-data keys reports may change: only those the type argument's `reportable` names
   * (so the types of `cb.data` stay true). See {@link AnchorOptions.reportable}.
   */
  reportable?: readonly ReportableOf<T>[];
};

/** The anchor types a pair of schemas describe. */
export type SchemaTypes<
  TData extends StandardSchemaV1 | undefined,
  TReports extends ReportSchemas | undefined,
> = (TData extends StandardSchemaV1
  ? { data: InferOutput<TData>; dataInput: InferInput<TData> }
  : unknown) &
  (TReports extends ReportSchemas
    ? {
        reports: {
          [K in keyof TReports]: TReports[K] extends StandardSchemaV1
            ? InferOutput<TReports[K]>
            : never;
        };
        reportsInput: {
          [K in keyof TReports]: TReports[K] extends StandardSchemaV1
            ? InferInput<TReports[K]>
            : never;
        };
      }
    : unknown);

/** Create options through a typed handle: `data` typed (and required if it has required keys). */
export type TypedCreateOptions<T> = Omit<CreateOptions, 'data'> &
  (Empty extends DataInput<T> ? { data?: DataInput<T> } : { data: DataInput<T> });

/** The arguments of a typed `create()`: the options, required when the data has required keys. */
export type TypedCreateArgs<T> =
  Empty extends DataInput<T> ? [options?: TypedCreateOptions<T>] : [options: TypedCreateOptions<T>];

/** A created callback through a typed handle: its token typed by its anchor, its data by its types. */
export type TypedCallback<T, N extends string = string> = Omit<
  CreatedCallback,
  'data' | 'token'
> & {
  readonly token: Token<N>;
  readonly data: DataView<T>;
};

/** What every typed answer has. */
type TypedAnswerBase<N extends string> = Omit<CallbackAnswer, 'status' | 'token' | 'data'> & {
  readonly token: Token<N>;
};

/**
 * An answer about a callback of a typed anchor: while the callback is known, `data` is typed by
 * the anchor's types; a `notFound` answer (an unknown, forged or removed token) has no data.
 * Narrow on `status` before reading `data`.
 */
export type TypedAnswer<T, N extends string = string> =
  | (TypedAnswerBase<N> & { readonly status: CallbackStatus; readonly data: DataView<T> })
  | (TypedAnswerBase<N> & {
      readonly status: 'notFound';
      readonly data: { readonly [key: string]: never };
    });

/**
 * What `engine.anchor()` returns: the anchor's name, and typed ways to create its callbacks,
 * report to them and read them. The string-name API (`engine.create('order', ...)`) keeps working.
 * Every method taking a token refuses a token of another anchor: at compile time when the token
 * is typed (`Token<'payment'>`), at run time (`InvalidArgumentError`) when it is a plain string.
 */
export interface AnchorHandle<T = AnchorTypes, N extends string = string> {
  /** The anchor's name. */
  readonly name: N;
  /** Only a type (never set): the anchor's types, for {@link TypedEngine}. */
  readonly [typesOf]?: T;
  /** Like `engine.create(name, options)`, with `options.data` type-checked. */
  create(...args: TypedCreateArgs<T>): Promise<TypedCallback<T, N>>;
  /** Dispatches a report to a callback of this anchor, with its data type-checked for `status`. */
  report<S extends DispatchStatus>(
    token: Token<N>,
    status: S,
    ...data: Empty extends ReportInput<T, S>
      ? [data?: ReportInput<T, S>]
      : [data: ReportInput<T, S>]
  ): Promise<TypedAnswer<T, N>>;
  /** Like `engine.get(token)`, typed. */
  get(token: Token<N>): Promise<TypedAnswer<T, N>>;
  /** Like `engine.wait(token, options)`, typed: the final answer once the callback is terminal. */
  wait(token: Token<N>, options?: WaitOptions): Promise<TypedAnswer<T, N>>;
  /** Like `engine.cancel(token, data)`, typed. */
  cancel(token: Token<N>, data?: Record<string, unknown>): Promise<TypedAnswer<T, N>>;
}

/** Any anchor handle (the constraint of {@link TypedEngine}). */
export interface AnyAnchorHandle {
  readonly name: string;
  readonly [typesOf]?: unknown;
}

/** The types of the handle named `N` among the handles `H`. */
export type TypesOf<H extends AnyAnchorHandle, N extends string> = H extends {
  readonly name: N;
  readonly [typesOf]?: infer T;
}
  ? T
  : never;
