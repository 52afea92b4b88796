/**
 * Schemas at the edge: creation and report data checked through the Standard
 * Schema interface (https://standardschema.dev), which zod, valibot, arktype
 * and others implement. None of them is a dependency: the interface below is
 * the spec's own, copied as its authors recommend (MIT), and a schema is used
 * only through `schema['~standard'].validate`.
 *
 * @module
 */

import { ingestData, type CallbackData } from './data.js';
import { describe } from './duration.js';
import { InvalidArgumentError, InvalidDataError, type DataIssue } from './errors.js';
import { DISPATCH_STATUSES, type DispatchStatus } from './lifecycle/statuses.js';

/** The Standard Schema interface, version 1: what a schema given to an anchor must implement. */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': StandardSchemaProps<Input, Output>;
}

/** The `~standard` property of a {@link StandardSchemaV1}. */
export interface StandardSchemaProps<Input = unknown, Output = Input> {
  readonly version: 1;
  readonly vendor: string;
  readonly validate: (
    value: unknown,
  ) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
  readonly types?: { readonly input: Input; readonly output: Output } | undefined;
}

/** What a Standard Schema's `validate` returns. */
export type StandardSchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: readonly StandardSchemaIssue[] };

/** One issue a Standard Schema reports. */
export interface StandardSchemaIssue {
  readonly message: string;
  readonly path?: readonly (PropertyKey | { readonly key: PropertyKey })[] | undefined;
}

/** The type a schema accepts. */
export type InferInput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['input'];
/** The type a schema produces (what steps see). */
export type InferOutput<S extends StandardSchemaV1> = NonNullable<
  S['~standard']['types']
>['output'];

/** Report schemas of an anchor: by exact status, or `'*'` for every status without its own. */
export type ReportSchemas = { readonly [S in DispatchStatus | '*']?: StandardSchemaV1 };

/** An anchor's schemas after validation. */
export interface ResolvedSchemas {
  readonly data: StandardSchemaV1 | undefined;
  readonly reports: ReportSchemas | undefined;
}

const MAX_ISSUES = 20;

/** Whether `value` implements Standard Schema v1. */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  const props = (value as { '~standard'?: unknown })['~standard'];
  return (
    typeof props === 'object' &&
    props !== null &&
    (props as { version?: unknown }).version === 1 &&
    typeof (props as { validate?: unknown }).validate === 'function'
  );
}

/** Checks an anchor's `data` and `reports` options. */
export function resolveSchemas(anchor: string, data: unknown, reports: unknown): ResolvedSchemas {
  if (data !== undefined && !isStandardSchema(data)) {
    throw new InvalidArgumentError(
      `anchor "${anchor}" options.data must be a Standard Schema (zod, valibot, arktype, ...) (got ${describe(data)})`,
    );
  }
  if (reports === undefined) return { data, reports: undefined };
  if (typeof reports !== 'object' || reports === null || Array.isArray(reports)) {
    throw new InvalidArgumentError(
      `anchor "${anchor}" options.reports must be an object of schemas by status (got ${describe(reports)})`,
    );
  }
  const out: Record<string, StandardSchemaV1> = Object.create(null) as Record<
    string,
    StandardSchemaV1
  >;
  for (const [key, schema] of Object.entries(reports)) {
    if (key !== '*' && !(DISPATCH_STATUSES as readonly string[]).includes(key)) {
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.reports has unknown key "${key}"; use a status a report can carry (${DISPATCH_STATUSES.join(', ')}) or "*"`,
      );
    }
    if (schema === undefined) continue;
    if (!isStandardSchema(schema)) {
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.reports.${key} must be a Standard Schema (got ${describe(schema)})`,
      );
    }
    out[key] = schema;
  }
  return { data, reports: Object.freeze(out) };
}

/** The schema a report with `status` is checked against, if any. */
export function reportSchema(
  schemas: ResolvedSchemas,
  status: DispatchStatus,
): StandardSchemaV1 | undefined {
  const r = schemas.reports;
  return r === undefined ? undefined : (r[status] ?? r['*']);
}

/**
 * Checks `value` against `schema`. The schema's output (it may strip or coerce) becomes the data,
 * checked again as JSON data of at most `maxBytes`.
 * @returns the data, or a promise of it when the schema validates asynchronously.
 * @throws {@link InvalidDataError} listing the issues (path and message) when it fails.
 */
export function checkSchema(
  what: string,
  schema: StandardSchemaV1,
  value: CallbackData,
  maxBytes: number,
): CallbackData | Promise<CallbackData> {
  let result;
  try {
    result = schema['~standard'].validate(value);
  } catch (err) {
    throw new InvalidDataError(`${what}: the schema threw while validating`, { cause: err });
  }
  if (result instanceof Promise) {
    return result.then(
      (r) => settle(what, r, maxBytes),
      (err: unknown) => {
        throw new InvalidDataError(`${what}: the schema threw while validating`, { cause: err });
      },
    );
  }
  return settle(what, result, maxBytes);
}

function settle(
  what: string,
  result: StandardSchemaResult<unknown>,
  maxBytes: number,
): CallbackData {
  if (result.issues === undefined) return ingestData(what, result.value, maxBytes);
  const issues: DataIssue[] = result.issues.slice(0, MAX_ISSUES).map((issue) => ({
    path: (issue.path ?? []).map((p) => {
      const key = typeof p === 'object' && p !== null ? p.key : p;
      return typeof key === 'number' ? key : String(key);
    }),
    message: String(issue.message),
  }));
  const shown = issues
    .slice(0, 3)
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
  const more = result.issues.length > 3 ? ` (and ${result.issues.length - 3} more)` : '';
  throw new InvalidDataError(`${what} does not match its schema: ${shown}${more}`, { issues });
}
