/**
 * Typed anchors: `engine.anchor()` returns a handle whose `create({ data })` and `report()` are
 * type-checked, and whose steps see `cb.data` and `cb.report` typed per status. The types come
 * from a type argument (`engine.anchor<{ data: ...; reports: ... }>(...)`) or are inferred from
 * the anchor's Standard Schemas (`data`, `reports`), which also check the data at run time.
 *
 * @module
 */

import type { CallbackData } from './data.js';
import type { CallbackStatus, DispatchStatus, StepKey } from './lifecycle/statuses.js';
import type { AnchorOptions } from './options/anchor.js';
import type { CreateOptions } from './options/create.js';
import type { InferInput, InferOutput, ReportSchemas, StandardSchemaV1 } from './schema.js';
import type {
  CallbackAnswer,
  CreatedCallback,
  StepInput,
  StepOutput,
  WorkerStep,
} from './types.js';

/** Report data types by status, or `'*'` for every status without its own. */
export type ReportTypes = { [S in DispatchStatus | '*']?: object };

/**
 * The data types of an anchor, given as its type argument:
 * `engine.anchor<{ data: { orderId: number }; reports: { progress: { pct: number } } }>('order', ...)`.
 */
export interface AnchorTypes {
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

/** What a typed step sees as `cb.data`: the declared creation data, plus whatever else was merged. */
export type DataView<T> = T extends { data: infer D extends object }
  ? Readonly<D> & Loose
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
export type TypedAnchorOptions<T> = Omit<AnchorOptions, 'next'> & {
  /** Steps by status (spec 6), typed by the anchor's data types. */
  next?: TypedStepMap<T>;
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

/** A created callback through a typed handle. */
export type TypedCallback<T> = Omit<CreatedCallback, 'data'> & {
  readonly data: DataView<T>;
};

/**
 * What `engine.anchor()` returns: the anchor's name, and typed ways to create its callbacks and
 * report to them. The string-name API (`engine.create('order', ...)`) keeps working.
 */
export interface AnchorHandle<T = AnchorTypes> {
  /** The anchor's name. */
  readonly name: string;
  /** Like `engine.create(name, options)`, with `options.data` type-checked. */
  create(
    ...args: Empty extends DataInput<T>
      ? [options?: TypedCreateOptions<T>]
      : [options: TypedCreateOptions<T>]
  ): Promise<TypedCallback<T>>;
  /** Dispatches a report to a callback of this anchor, with its data type-checked for `status`. */
  report<S extends DispatchStatus>(
    token: string,
    status: S,
    ...data: Empty extends ReportInput<T, S>
      ? [data?: ReportInput<T, S>]
      : [data: ReportInput<T, S>]
  ): Promise<CallbackAnswer>;
}

/** What a handle needs from the engine. */
interface HandleHost {
  create(anchor: string, options?: CreateOptions): Promise<CreatedCallback>;
  dispatch(message: {
    type: 'CALLBACK';
    callbackToken: string;
    callbackStatus: DispatchStatus;
    callbackData?: Record<string, unknown>;
  }): Promise<CallbackAnswer>;
}

/** The handle of anchor `name` (frozen; holds nothing but the name). */
export function anchorHandle(engine: HandleHost, name: string): AnchorHandle {
  return Object.freeze({
    name,
    create: (options?: CreateOptions) =>
      engine.create(name, options) as Promise<TypedCallback<AnchorTypes>>,
    report: (token: string, status: DispatchStatus, data?: object) =>
      engine.dispatch({
        type: 'CALLBACK',
        callbackToken: token,
        callbackStatus: status,
        ...(data === undefined ? {} : { callbackData: data as Record<string, unknown> }),
      }),
  }) as AnchorHandle;
}
