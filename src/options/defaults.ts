/**
 * The frozen defaults of engine, anchor and early-event options, and the
 * limits on names, tags and idempotency keys.
 *
 * @module
 */

import { DEFAULT_ATTRIBUTES } from '../answer.js';

/** Frozen defaults. */
export const DEFAULTS = Object.freeze({
  timeout: 'PT1H',
  retention: 'PT1H',
  maxDataBytes: 256 * 1024,
  maxLiveActors: 100_000,
  stepTimeout: 'PT5M',
  closeTimeout: 'PT10S',
  dedupWindow: 'PT24H',
  maxCallbackBytes: 1024 * 1024,
  early: Object.freeze({ maxEvents: 1000, maxBytes: 1024 * 1024, retention: 'PT10M' }),
  attributes: DEFAULT_ATTRIBUTES,
});

/** Limits on names and tags. */
export const LIMITS = Object.freeze({
  nameLength: 128,
  maxTags: 10,
  tagLength: 64,
  idempotencyKeyLength: 256,
});
