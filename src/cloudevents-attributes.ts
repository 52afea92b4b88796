/**
 * CloudEvents 1.0 attribute names, shared by the call-in point (which reads events) and
 * `callback-engine/client` (which writes them).
 *
 * @module
 */

/** Context attributes of CloudEvents 1.0 (never extensions). */
export const CONTEXT_ATTRIBUTES: ReadonlySet<string> = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'datacontenttype',
  'dataschema',
  'subject',
  'time',
  'data',
  'data_base64',
]);

/** CloudEvents attribute names: lower-case letters and digits (20 advised; 64 tolerated). */
export const ATTRIBUTE_NAME_RE = /^[a-z0-9]{1,64}$/;
