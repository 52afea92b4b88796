/**
 * CloudEvents encoding for `sendEvent()`: the event's context attributes and
 * extensions checked, then laid out in structured mode (the whole event as the
 * JSON body) or binary mode (`ce-*` headers, the data as the body).
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { ATTRIBUTE_NAME_RE, CONTEXT_ATTRIBUTES } from '../cloudevents-attributes.js';
import { InvalidArgumentError } from '../errors.js';
import { checkStatus, isObject, jsonBody, show } from './checks.js';
import type { CallbackEventInput, EventOptions } from './types.js';

/** The attributes of an event (`specversion`, `id`, `source`, `type`, `subject`, `time`) or its extensions. */
type Attributes = Record<string, string | number | boolean>;

/** An event after its checks: its id, context attributes and extension attributes. */
export interface CheckedEvent {
  /** The event id (made once when the caller gave none): it deduplicates the retries. */
  readonly id: string;
  readonly attributes: Attributes;
  readonly extensions: Attributes;
}

/**
 * Checks an event's attributes and extensions, giving it an id if it has none.
 *
 * @throws `InvalidArgumentError` naming the first bad attribute.
 */
export function checkEvent(event: CallbackEventInput): CheckedEvent {
  const text = (name: string, value: unknown, required: boolean): string | undefined => {
    if (value === undefined && !required) return undefined;
    if (typeof value !== 'string' || value.length === 0)
      throw new InvalidArgumentError(
        `event.${name} must be a non-empty string (got ${show(value)})`,
      );
    return value;
  };
  const id = text('id', event.id ?? randomUUID(), true)!;
  const attributes: Attributes = {
    specversion: '1.0',
    id,
    source: text('source', event.source, true)!,
    type: text('type', event.type, true)!,
  };
  const subject = text('subject', event.subject, false);
  if (subject !== undefined) attributes.subject = subject;
  const time = text('time', event.time, false);
  if (time !== undefined) attributes.time = time;
  const extensions: Attributes = {};
  if (event.extensions !== undefined) {
    if (!isObject(event.extensions))
      throw new InvalidArgumentError('event.extensions must be an object');
    for (const [name, value] of Object.entries(event.extensions)) {
      if (!ATTRIBUTE_NAME_RE.test(name) || CONTEXT_ATTRIBUTES.has(name))
        throw new InvalidArgumentError(
          `event.extensions: ${show(name)} is not an extension attribute name (lower-case letters and digits, not a context attribute)`,
        );
      if (!(
        typeof value === 'string' ||
        typeof value === 'boolean' ||
        (typeof value === 'number' && Number.isFinite(value))
      ))
        throw new InvalidArgumentError(
          `event.extensions.${name} must be a string, number or boolean (got ${show(value)})`,
        );
      extensions[name] = value;
    }
  }
  const token = text('callbackToken', event.callbackToken, false);
  if (token !== undefined) extensions.callbacktoken = token;
  const callbackId = text('callbackId', event.callbackId, false);
  if (callbackId !== undefined) extensions.callbackid = callbackId;
  if (event.callbackStatus !== undefined)
    extensions.callbackstatus = checkStatus(event.callbackStatus);
  return { id, attributes, extensions };
}

/** The headers and body of an event in `mode` (the data as JSON). */
export function encodeEvent(
  mode: NonNullable<EventOptions['mode']>,
  { attributes, extensions }: CheckedEvent,
  data: unknown,
): { headers: Record<string, string>; body: string } {
  let headers: Record<string, string>;
  let body: string;
  if (mode === 'structured') {
    const whole: Record<string, unknown> = { ...attributes, ...extensions };
    if (data !== undefined) {
      whole.datacontenttype = 'application/json';
      whole.data = data;
    }
    body = jsonBody('event', whole);
    headers = { 'content-type': 'application/cloudevents+json; charset=utf-8' };
  } else {
    headers = {};
    for (const [name, value] of Object.entries({ ...attributes, ...extensions }))
      headers[`ce-${name}`] = headerValue(String(value));
    body = data === undefined ? '' : jsonBody('event.data', data);
    if (body !== '') headers['content-type'] = 'application/json';
  }
  return { headers, body };
}

/** Percent-encodes what a CloudEvents binary-mode header value must not carry as is. */
function headerValue(value: string): string {
  return value.replace(/[^\x21-\x7e]|["%]/gu, (c) => encodeURIComponent(c));
}
