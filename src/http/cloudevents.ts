/**
 * CloudEvents 1.0 over HTTP (binary, structured and batch content modes),
 * parsed into the few things a dispatch needs: id, type, extension attributes
 * and JSON data. No SDK dependency; every field is checked.
 *
 * @module
 */

import type { IncomingHttpHeaders } from 'node:http';
import { ATTRIBUTE_NAME_RE, CONTEXT_ATTRIBUTES } from '../cloudevents-attributes.js';
import { InvalidDataError, InvalidMessageError } from '../errors.js';
import { checkCharset, isJsonType, mediaType, parseJson, unsupported } from './body.js';

/** The structured content mode's media type. */
export const CE_JSON = 'application/cloudevents+json';
/** The batched content mode's media type. */
export const CE_BATCH_JSON = 'application/cloudevents-batch+json';

/** A CloudEvent reduced to what routing and dispatch need. */
export interface IncomingEvent {
  readonly id: string;
  readonly type: string;
  readonly source: string;
  /** Extension attributes by (lower-case) name; a null-prototype object. */
  readonly extensions: Readonly<Record<string, string | number | boolean>>;
  /** The event data parsed from JSON; `undefined` when the event has none. */
  readonly data: unknown;
}

/** The HTTP content mode of a request, or `undefined` when it carries no CloudEvent. */
export type ContentMode = 'binary' | 'structured' | 'batch';

/**
 * The content mode of a request: batch and structured by media type, binary
 * by the presence of `ce-specversion`.
 */
export function contentMode(headers: IncomingHttpHeaders): ContentMode | undefined {
  const type = mediaType(headers);
  if (type === CE_BATCH_JSON) return 'batch';
  if (type === CE_JSON) return 'structured';
  if (headers['ce-specversion'] !== undefined) return 'binary';
  return undefined;
}

function requireString(value: unknown, name: string, index: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidMessageError(
      `${index}CloudEvent attribute "${name}" must be a non-empty string`,
    );
  }
  return value;
}

function checkContext(
  attrs: { specversion: unknown; id: unknown; source: unknown; type: unknown },
  index: string,
) {
  if (attrs.specversion !== '1.0') {
    throw new InvalidMessageError(
      `${index}CloudEvent specversion must be "1.0" (got ${typeof attrs.specversion === 'string' ? JSON.stringify(attrs.specversion.slice(0, 40)) : typeof attrs.specversion})`,
    );
  }
  return {
    id: requireString(attrs.id, 'id', index),
    source: requireString(attrs.source, 'source', index),
    type: requireString(attrs.type, 'type', index),
  };
}

/** Percent-decodes a binary-mode header value; a malformed escape leaves it as sent. */
function headerValue(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value.join(',') : value;
  if (v === undefined || !v.includes('%')) return v;
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/**
 * Parses a binary-mode event: context and extension attributes from `ce-*`
 * headers, the body as its data. Data must be JSON (or absent).
 *
 * @throws {@link InvalidMessageError} for missing or malformed attributes or JSON;
 *   `HttpError` 415 when the data is not JSON.
 */
export function parseBinary(
  headers: IncomingHttpHeaders,
  body: Buffer,
  maxDepth: number,
): IncomingEvent {
  const context = checkContext(
    {
      specversion: headerValue(headers['ce-specversion']),
      id: headerValue(headers['ce-id']),
      source: headerValue(headers['ce-source']),
      type: headerValue(headers['ce-type']),
    },
    '',
  );
  const extensions = Object.create(null) as Record<string, string>;
  for (const name of Object.keys(headers)) {
    if (!name.startsWith('ce-')) continue;
    const attr = name.slice(3);
    if (CONTEXT_ATTRIBUTES.has(attr) || !ATTRIBUTE_NAME_RE.test(attr)) continue;
    const value = headerValue(headers[name]);
    if (value !== undefined) extensions[attr] = value;
  }
  let data: unknown;
  if (body.length > 0) {
    const type = mediaType(headers);
    if (type !== '' && !isJsonType(type)) {
      throw unsupported(`CloudEvent data must be JSON (got content-type ${JSON.stringify(type)})`);
    }
    checkCharset(headers);
    data = parseJson(body, maxDepth, 'event data');
  }
  return { ...context, extensions, data };
}

/**
 * Turns one structured-mode event (already parsed JSON) into an {@link IncomingEvent}.
 *
 * @param index - a prefix for error messages, such as `events[3]: `.
 * @throws {@link InvalidMessageError} or {@link InvalidDataError}.
 */
export function fromStructured(value: unknown, maxDepth: number, index = ''): IncomingEvent {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidMessageError(`${index}a structured CloudEvent must be a JSON object`);
  }
  const e = value as Record<string, unknown>;
  const context = checkContext(
    { specversion: e.specversion, id: e.id, source: e.source, type: e.type },
    index,
  );
  const extensions = Object.create(null) as Record<string, string | number | boolean>;
  for (const name of Object.keys(e)) {
    if (CONTEXT_ATTRIBUTES.has(name) || !ATTRIBUTE_NAME_RE.test(name)) continue;
    const v = e[name];
    if (
      typeof v === 'string' ||
      typeof v === 'boolean' ||
      (typeof v === 'number' && Number.isFinite(v))
    ) {
      extensions[name] = v;
    }
  }
  const dct = e.datacontenttype;
  if (
    dct !== undefined &&
    (typeof dct !== 'string' || !isJsonType(mediaType({ 'content-type': dct })))
  ) {
    throw new InvalidDataError(
      `${index}CloudEvent data must be JSON (got datacontenttype ${JSON.stringify(dct)})`,
    );
  }
  let data: unknown = e.data;
  if (e.data_base64 !== undefined) {
    if (e.data !== undefined)
      throw new InvalidMessageError(
        `${index}a CloudEvent must not carry both data and data_base64`,
      );
    if (typeof e.data_base64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(e.data_base64)) {
      throw new InvalidMessageError(`${index}CloudEvent data_base64 must be a base64 string`);
    }
    data = parseJson(Buffer.from(e.data_base64, 'base64'), maxDepth, `${index}event data_base64`);
  }
  return { ...context, extensions, data };
}

/**
 * Checks a batch body: a JSON array of at most `maxEvents` events.
 *
 * @returns the raw entries, to be turned into events one by one (a bad entry
 *   fails alone, not the batch).
 * @throws {@link InvalidMessageError} when the body is not such an array.
 */
export function batchEntries(value: unknown, maxEvents: number): readonly unknown[] {
  if (!Array.isArray(value))
    throw new InvalidMessageError('a CloudEvents batch must be a JSON array of events');
  if (value.length > maxEvents) {
    throw new InvalidMessageError(
      `a CloudEvents batch holds at most ${maxEvents} events (got ${value.length})`,
    );
  }
  return value;
}
