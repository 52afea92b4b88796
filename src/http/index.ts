/**
 * callback-engine/http: the Dispatch Callback Service (spec 11.2, 11.3).
 * Outside services report over HTTP with the CALLBACK message, by POSTing to a
 * callback URL, or with a CloudEvent. Start with {@link createDispatchHandler}
 * (mount it in node:http or Connect), {@link serve} (a standalone server), or
 * the one-line mounts `callback-engine/fastify` and `callback-engine/express`.
 *
 * @packageDocumentation
 */

export { signRequest } from './auth.js';
export type { SignedHeadersInput, SignRequestInput } from './auth.js';
export { contentMode, CE_BATCH_JSON, CE_JSON } from './cloudevents.js';
export type { ContentMode, IncomingEvent } from './cloudevents.js';
export { createDispatchHandler } from './handler.js';
export type { DispatchHandler } from './handler.js';
export { createOpenApiDocument, openApiDocument } from './openapi.js';
export type { OpenApiDocument, OpenApiOptions } from './openapi.js';
export { HTTP_DEFAULTS } from './options.js';
export type {
  CloudEventsOptions,
  DispatchAuthOptions,
  DispatchHandlerOptions,
  DispatchHmacOptions,
} from './options.js';
export { OUTCOME_HEADER } from './respond.js';
export type {
  CallbackOutcome,
  DispatchErrorCode,
  ErrorBody,
  HttpOnlyErrorCode,
} from './respond.js';
export { serve } from './serve.js';
export type { DispatchServer, ServeOptions } from './serve.js';
