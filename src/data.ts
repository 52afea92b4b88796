/**
 * Callback data rules (spec 8): JSON-serializable plain objects, a size limit
 * per report, and a shallow merge where later keys win and `__proto__`,
 * `constructor` and `prototype` are never merged.
 *
 * @module
 */

import { CallbackEngineError, InvalidDataError, PayloadTooLargeError } from './errors.js';
import { cut, MAX_STEP_ERROR_CHARS, toStepError } from './thrown.js';

/** A JSON value. */
export type JsonValue =
  string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Callback data: a JSON object. */
export type CallbackData = { readonly [key: string]: JsonValue };

/** Keys that are never merged into callback data. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set([
  '__proto__',
  'constructor',
  'prototype',
]);

/** The frozen empty data object. */
export const EMPTY_DATA: CallbackData = Object.freeze({});

/** Freezes a JSON value and everything in it. */
export function deepFreeze(value: unknown): void {
  if (typeof value !== 'object' || value === null) return;
  Object.freeze(value);
  for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
}

/**
 * Validates report data and returns a private, deeply frozen copy with the
 * forbidden keys dropped at the top level.
 *
 * @param what - how to name the data in errors, e.g. `callbackData`.
 * @param value - the incoming data; `undefined` and `null` mean `{}`.
 * @param maxBytes - limit on the UTF-8 size of its JSON text.
 * @returns the frozen copy.
 * @throws {@link InvalidDataError} if it is not a JSON-serializable plain object.
 * @throws {@link PayloadTooLargeError} if its JSON is larger than `maxBytes`.
 */
export function ingestData(what: string, value: unknown, maxBytes: number): CallbackData {
  try {
    return ingest(what, value, maxBytes);
  } catch (err) {
    // A hostile value (a Proxy, a getter that throws) fails as bad data with a bounded message.
    if (isOwnError(err)) throw err;
    throw new InvalidDataError(
      cut(`${what} cannot be read: ${toStepError(err).message}`, MAX_STEP_ERROR_CHARS),
    );
  }
}

/** Whether `err` is one of the engine's errors (checked without letting a hostile value throw). */
function isOwnError(err: unknown): boolean {
  try {
    return err instanceof CallbackEngineError;
  } catch {
    return false;
  }
}

function ingest(what: string, value: unknown, maxBytes: number): CallbackData {
  if (value === undefined || value === null) return EMPTY_DATA;
  const flat = ingestFlat(value, maxBytes);
  if (flat) return flat;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidDataError(
      `${what} must be a JSON object (got ${Array.isArray(value) ? 'an array' : typeof value})`,
    );
  }
  checkJson(what, value, 0);
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new InvalidDataError(
      cut(`${what} is not JSON-serializable: ${toStepError(err).message}`, MAX_STEP_ERROR_CHARS),
      {
        cause: err,
      },
    );
  }
  if (json === undefined) throw new InvalidDataError(`${what} is not JSON-serializable`);
  // A UTF-8 byte is at most 3 per UTF-16 unit, so short texts skip the exact count.
  if (json.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > maxBytes) {
      throw new PayloadTooLargeError(
        `${what} is ${bytes} bytes of JSON, over the limit of ${maxBytes}`,
        maxBytes,
      );
    }
  }
  return parseFrozen(json);
}

/**
 * Like {@link ingestData} for a value just parsed from JSON text of known
 * size (the HTTP path): no second serialization.
 */
export function ingestParsed(what: string, value: unknown): CallbackData {
  if (value === undefined || value === null) return EMPTY_DATA;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidDataError(
      `${what} must be a JSON object (got ${Array.isArray(value) ? 'an array' : typeof value})`,
    );
  }
  const out = value as Record<string, JsonValue>;
  freezeClean(out);
  return out;
}

const FLAT_MAX_KEYS = 32;

/**
 * Fast path of {@link ingestData} for the common report: a plain object of at
 * most 32 keys whose values are strings, finite numbers, booleans or null.
 * Such an object's JSON is provably under the limit when this bound is (6
 * bytes per UTF-16 unit covers `\uXXXX` escapes), so neither a JSON round
 * trip nor a deep freeze is needed.
 *
 * @returns the frozen copy, or `undefined` to take the general path.
 */
/**
 * An upper bound on the JSON bytes of one flat entry (`"key":value,`): 6 bytes per UTF-16 unit
 * covers `\uXXXX` escapes. `-1` when the value is not a flat JSON scalar (an object, an array, a
 * non-finite number, anything not JSON).
 */
function flatEntryBound(key: string, v: unknown): number {
  const k = key.length * 6 + 4;
  if (typeof v === 'string') return k + v.length * 6 + 2;
  if (typeof v === 'number') return Number.isFinite(v) ? k + 24 : -1;
  if (typeof v === 'boolean' || v === null) return k + 5;
  return -1;
}

function ingestFlat(value: unknown, maxBytes: number): CallbackData | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return undefined;
  const src = value as Record<string, unknown>;
  const keys = Object.keys(src);
  if (keys.length > FLAT_MAX_KEYS) return undefined;
  const out: Record<string, JsonValue> = {};
  let bound = 2;
  for (const key of keys) {
    if (FORBIDDEN_KEYS.has(key)) continue;
    const v = src[key];
    const entry = flatEntryBound(key, v);
    if (entry < 0) return undefined;
    bound += entry;
    out[key] = v as JsonValue;
  }
  return bound <= maxBytes ? Object.freeze(out) : undefined;
}

function parseFrozen(json: string): CallbackData {
  const out = JSON.parse(json) as Record<string, JsonValue>;
  freezeClean(out);
  return out;
}

/** Deepest nesting of report data accepted (beyond it, a JSON tree is more likely an attack). */
const MAX_DEPTH = 256;

/**
 * Refuses what JSON would silently change or drop: functions, symbols, BigInts,
 * non-finite numbers and objects that are not plain (`Date`, `Map`, class
 * instances). `undefined` object members are dropped, as JSON does.
 *
 * @throws {@link InvalidDataError} naming the path of the first bad value.
 */
function checkJson(what: string, value: unknown, depth: number, path = what): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return;
    throw new InvalidDataError(`${path} is ${String(value)}, which JSON cannot hold`);
  }
  if (typeof value !== 'object') {
    if (value === undefined && depth > 0) return;
    throw new InvalidDataError(`${path} is a ${typeof value}, which is not JSON`);
  }
  if (depth > MAX_DEPTH)
    throw new InvalidDataError(`${what} is nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (value[i] === undefined)
        throw new InvalidDataError(`${path}[${i}] is undefined, which is not JSON`);
      checkJson(what, value[i], depth + 1, `${path}[${i}]`);
    }
    return;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    throw new InvalidDataError(
      `${path} is a ${name}, not a plain object: convert it to JSON values first`,
    );
  }
  for (const key of Object.keys(value))
    checkJson(what, (value as Record<string, unknown>)[key], depth + 1, `${path}.${key}`);
}

/**
 * Removes `__proto__`, `constructor` and `prototype` keys at every depth (an own
 * `__proto__` key nested in data would change the prototype of whatever user
 * code `Object.assign`s it into) and freezes everything.
 */
function freezeClean(value: unknown): void {
  if (typeof value !== 'object' || value === null) return;
  if (!Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const key of FORBIDDEN_KEYS) if (Object.hasOwn(obj, key)) delete obj[key];
  }
  Object.freeze(value);
  for (const key of Object.keys(value)) freezeClean((value as Record<string, unknown>)[key]);
}

/**
 * Shallow merge: a new frozen object with `patch`'s keys over `base`'s.
 * Both inputs must come from {@link ingestData}, so neither holds forbidden keys.
 *
 * @returns `base` itself when `patch` is empty.
 */
export function mergeData(base: CallbackData, patch: CallbackData): CallbackData {
  const keys = Object.keys(patch);
  if (keys.length === 0) return base;
  const out: Record<string, JsonValue> = { ...base };
  for (const key of keys) out[key] = patch[key]!;
  return Object.freeze(out);
}

/** Exact UTF-8 size of the JSON text of `value`. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
}

/** Above this, a patch's size bound is measured exactly instead of estimated. */
const ESTIMATE_MAX_BYTES = 4096;

/**
 * An upper bound on the bytes `patch` can add to the JSON of data it is merged into (its entries
 * and their commas). O(keys) for the common small flat report, exact (one `JSON.stringify`) for
 * anything else.
 */
export function patchBytesBound(patch: CallbackData): number {
  const keys = Object.keys(patch);
  if (keys.length === 0) return 0;
  if (keys.length <= FLAT_MAX_KEYS) {
    let bound = 0;
    for (const key of keys) {
      const entry = flatEntryBound(key, patch[key]);
      if (entry < 0) {
        bound = Number.POSITIVE_INFINITY;
        break;
      }
      bound += entry;
    }
    if (bound <= ESTIMATE_MAX_BYTES) return bound;
  }
  return jsonBytes(patch);
}

/**
 * Checks that merging `patch` into `version` keeps the data within `maxBytes` (spec 16,
 * `maxCallbackBytes`). Works on an upper bound of the version's size, so the common case costs
 * O(patch keys); only when the bound passes the limit is the data measured exactly.
 *
 * @param versionBytes - an upper bound of the version's JSON size, or `undefined` if unknown.
 * @param patchBytes - {@link patchBytesBound} of `patch`.
 * @returns an upper bound of the version's size (exact if it was measured); add `patchBytes`
 *   to it once the patch is merged.
 * @throws {@link PayloadTooLargeError} if the merged data would be larger than `maxBytes`.
 */
export function admitPatch(
  what: string,
  version: DataVersion,
  versionBytes: number | undefined,
  patch: CallbackData,
  patchBytes: number,
  maxBytes: number,
): number {
  let base = versionBytes ?? jsonBytes(version.value);
  if (base + patchBytes <= maxBytes) return base;
  if (versionBytes !== undefined) base = jsonBytes(version.value);
  if (base + patchBytes <= maxBytes) return base;
  const merged = jsonBytes(mergeData(version.value, patch));
  if (merged > maxBytes) {
    throw new PayloadTooLargeError(
      `${what} would make the callback's data ${merged} bytes of JSON, over the limit of ${maxBytes} (maxCallbackBytes)`,
      maxBytes,
    );
  }
  return base;
}

/** Patches a version chain may carry before it is folded into a new base. */
const MIN_COMPACT = 32;

/**
 * One immutable version of a callback's data.
 *
 * Copying a plain object on every report costs O(keys), so 10,000 reports with
 * distinct keys would cost O(n²). A version is instead a frozen base object
 * plus a prefix of a shared, append-only patch log: {@link DataVersion.with}
 * is O(1) amortized (the log is folded into a new base once it outgrows the
 * base), and the plain object is only built, once, when {@link DataVersion.value}
 * is read.
 */
export class DataVersion {
  readonly #base: CallbackData;
  readonly #baseKeys: number;
  readonly #log: CallbackData[];
  readonly #count: number;
  #value: CallbackData | undefined;

  private constructor(base: CallbackData, baseKeys: number, log: CallbackData[], count: number) {
    this.#base = base;
    this.#baseKeys = baseKeys;
    this.#log = log;
    this.#count = count;
    if (count === 0) this.#value = base;
  }

  /** A version holding exactly `data` (already ingested and frozen). */
  static of(data: CallbackData): DataVersion {
    return new DataVersion(data, Object.keys(data).length, [], 0);
  }

  /** The empty version. */
  static readonly EMPTY: DataVersion = DataVersion.of(EMPTY_DATA);

  /** This version with `patch` (already ingested) merged over it. */
  with(patch: CallbackData): DataVersion {
    if (patch === EMPTY_DATA) return this;
    let log = this.#log;
    // Appending is safe only at the log's end; a second branch from an old version copies its prefix.
    if (this.#count !== log.length) log = log.slice(0, this.#count);
    log.push(patch);
    const next = new DataVersion(this.#base, this.#baseKeys, log, this.#count + 1);
    return next.#count > MIN_COMPACT && next.#count > next.#baseKeys
      ? DataVersion.of(next.value)
      : next;
  }

  /** The data as a frozen plain object, built on first read. */
  get value(): CallbackData {
    if (this.#value !== undefined) return this.#value;
    const out: Record<string, JsonValue> = { ...this.#base };
    for (let i = 0; i < this.#count; i++) {
      const patch = this.#log[i]!;
      for (const key of Object.keys(patch)) out[key] = patch[key]!;
    }
    return (this.#value = Object.freeze(out));
  }
}

/**
 * Canonical JSON (sorted keys, recursively), used to tell a replayed terminal
 * report from a conflicting one.
 */
export function canonicalJson(value: unknown): string {
  if (typeof value !== 'object' || value === null) return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`)
    .join(',')}}`;
}
