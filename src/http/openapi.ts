/**
 * The OpenAPI 3.1 document of the Dispatch Callback Service, served at
 * `GET /openapi.json`. Includes a `callbacks` object telling an outside
 * service how to call back with the callback URL it was handed.
 *
 * @module
 */

import { DISPATCH_STATUSES, TERMINAL_STATUSES, ACTIVE_STATUSES } from '../lifecycle/statuses.js';

/** A JSON object (the document is plain data). */
export type OpenApiDocument = { readonly [key: string]: unknown };

/** Options of {@link createOpenApiDocument}. */
export interface OpenApiOptions {
  /** The routes' path prefix. @default '' */
  basePath?: string;
  /**
   * The service's public URL, listed under `servers` (a trailing base path is
   * dropped: the paths carry it). The handler passes the engine's `baseUrl`.
   * @default none
   */
  serverUrl?: string;
  /** Which auth the service requires, for `security`. @default none */
  auth?: { bearer?: boolean; hmac?: { header: string } };
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (schema: object) => ({ 'application/json': { schema } });
const reply = (description: string, name: string) => ({
  description,
  content: jsonContent(ref(name)),
});

const ERROR_RESPONSES = {
  '400': reply(
    'Malformed JSON, message, data or path (`CBE_ERR_INVALID_MESSAGE`, `CBE_ERR_INVALID_DATA`).',
    'Error',
  ),
  '401': reply(
    'Missing or wrong bearer token or signature (`CBE_ERR_UNAUTHORIZED`), with `WWW-Authenticate`.',
    'Error',
  ),
  '413': reply(
    'Body or report data over the limit (`CBE_ERR_PAYLOAD_TOO_LARGE`); the connection is closed.',
    'Error',
  ),
  '415': reply('Wrong content type (`CBE_ERR_UNSUPPORTED_MEDIA_TYPE`).', 'Error'),
  '503': {
    description:
      "Worker pool saturated, engine closed, store unavailable, an anchor's early-event hold full, or (relayed token) the origin engine unreachable (`CBE_ERR_POOL_SATURATED`, `CBE_ERR_ENGINE_CLOSED`, `CBE_ERR_STORE_UNAVAILABLE`, `CBE_ERR_EARLY_EVENTS_FULL`, `CBE_ERR_ORIGIN_UNAVAILABLE`); retry later.",
    headers: {
      'Retry-After': { schema: { type: 'integer', minimum: 1 }, description: 'Seconds to wait.' },
    },
    content: jsonContent(ref('Error')),
  },
} as const;

/** The `Callback-Outcome` response header: how a report or read was handled. */
const OUTCOME_HEADER = {
  'Callback-Outcome': {
    description:
      'How the request was handled: `applied`, `ignored` (a backward or repeated accept/start: nothing changed, its data was dropped), `replayed` (the same terminal report again), `conflict`, `notFound`, `read`; `queued` (202: several replicas, the owner of the callback was down, so the report was stored durably and is applied in order by the next owner).',
    schema: {
      type: 'string',
      enum: ['applied', 'ignored', 'replayed', 'conflict', 'notFound', 'read', 'queued'],
    },
  },
} as const;

const withOutcome = (description: string, name: string) => ({
  ...reply(description, name),
  headers: OUTCOME_HEADER,
});

const DISPATCH_RESPONSES = {
  '200': withOutcome(
    'Applied, ignored (repeated accept/start) or replayed: the status after handling; `Callback-Outcome` tells which.',
    'Answer',
  ),
  '202': withOutcome(
    'Queued (several replicas): the owner of the callback did not answer, so the report was stored durably and is applied, in order, by the next owner. `status` is the last known status.',
    'Answer',
  ),
  '404': withOutcome(
    'Unknown, forged or removed token (`CBE_ERR_NOT_FOUND`); `status` is `notFound`.',
    'AnswerError',
  ),
  '409': withOutcome(
    'The callback is no longer active (`CBE_ERR_ALREADY_SETTLED`); `status` is its current status.',
    'AnswerError',
  ),
  ...ERROR_RESPONSES,
} as const;

const DEDUP_PARAM = {
  name: 'Callback-Dedup-Key',
  in: 'header',
  required: false,
  description:
    'A deduplication key (1–200 characters): the same report delivered again with the same key (a retry, through another replica) is applied once; the repeat is answered `replayed`.',
  schema: { type: 'string', minLength: 1, maxLength: 200 },
} as const;

const TOKEN_PARAM = {
  name: 'token',
  in: 'path',
  required: true,
  description: 'The callback token (base64url), as handed to the outside party.',
  schema: { type: 'string', maxLength: 4096 },
} as const;

const STATUS_PARAM = {
  name: 'status',
  in: 'path',
  required: true,
  description: 'The reported status.',
  schema: { type: 'string', enum: [...DISPATCH_STATUSES] },
} as const;

/** The report operation of a callback URL: used in `paths` and in the `callbacks` object. */
const REPORT_OPERATION = {
  summary: 'Report to a callback through its callback URL',
  description:
    'The callback URL (`engine.callbackUrl(token)`) plus a status segment. The body is the report data, shallow-merged into the callback data; an empty body means `{}`.',
  requestBody: { required: false, content: jsonContent(ref('ReportData')) },
  responses: DISPATCH_RESPONSES,
} as const;

const SCHEMAS = {
  ReportData: {
    type: 'object',
    description:
      'Report data: a JSON object (keys `__proto__`, `constructor`, `prototype` are dropped). For `error`: `message`, `errorNumber`, `errorDescription`.',
    properties: {
      message: { type: 'string' },
      errorNumber: { type: 'number' },
      errorDescription: { type: 'string' },
    },
    additionalProperties: true,
  },
  CallbackMessage: {
    oneOf: [
      {
        type: 'object',
        required: ['type', 'callbackToken', 'callbackStatus'],
        properties: {
          type: { const: 'CALLBACK' },
          callbackToken: { type: 'string' },
          callbackStatus: { type: 'string', enum: [...DISPATCH_STATUSES] },
          callbackData: ref('ReportData'),
          dedupKey: {
            type: 'string',
            minLength: 1,
            maxLength: 200,
            description: 'Deduplication key (as the `Callback-Dedup-Key` header).',
          },
        },
      },
      {
        type: 'object',
        required: ['type', 'callbackToken', 'callbackAction'],
        properties: {
          type: { const: 'CALLBACK' },
          callbackToken: { type: 'string' },
          callbackAction: {
            type: 'string',
            enum: ['getCallback', 'exists'],
            description:
              '`getCallback` answers `{ status, token, data }`; `exists` answers status `exists` (or `notFound`, 404) with the token and empty data.',
          },
        },
      },
    ],
  },
  Answer: {
    type: 'object',
    required: ['status', 'token', 'data'],
    properties: {
      status: {
        type: 'string',
        enum: [...ACTIVE_STATUSES, ...TERMINAL_STATUSES, 'notFound', 'exists'],
      },
      token: { type: 'string' },
      data: { type: 'object', additionalProperties: true },
    },
  },
  Error: {
    type: 'object',
    required: ['code', 'message'],
    properties: {
      code: { type: 'string', pattern: '^CBE_ERR_[A-Z_]+$' },
      message: { type: 'string' },
      issues: {
        type: 'array',
        description:
          "`CBE_ERR_INVALID_DATA` from an anchor's schema: why the data failed (at most 20).",
        items: {
          type: 'object',
          required: ['path', 'message'],
          properties: {
            path: { type: 'array', items: { oneOf: [{ type: 'string' }, { type: 'integer' }] } },
            message: { type: 'string' },
          },
        },
      },
    },
  },
  AnswerError: { allOf: [ref('Answer'), ref('Error')] },
  CloudEvent: {
    type: 'object',
    description:
      "A CloudEvents 1.0 event (structured mode). The callback is found by `callbacktoken`, else `callbackid`, else the anchors' correlation attributes; the status is `callbackstatus`, else the anchor's `eventTypes` entry for `type`; `data` is the report data.",
    required: ['specversion', 'id', 'source', 'type'],
    properties: {
      specversion: { const: '1.0' },
      id: { type: 'string', minLength: 1 },
      source: { type: 'string', minLength: 1 },
      type: { type: 'string', minLength: 1 },
      datacontenttype: { type: 'string' },
      callbacktoken: { type: 'string' },
      callbackid: { type: 'string' },
      callbackstatus: { type: 'string', enum: [...DISPATCH_STATUSES] },
      data: ref('ReportData'),
      data_base64: { type: 'string', contentEncoding: 'base64' },
    },
    additionalProperties: true,
  },
  BatchResult: {
    type: 'array',
    items: {
      type: 'object',
      required: ['id', 'statusCode'],
      properties: {
        id: { type: ['string', 'null'] },
        statusCode: {
          type: 'integer',
          description: 'The HTTP status this event alone would have been answered with.',
        },
        outcome: {
          type: 'string',
          enum: ['applied', 'ignored', 'replayed', 'conflict', 'notFound', 'read', 'queued'],
          description: 'What the Callback-Outcome header says for this event alone.',
        },
        status: { type: 'string' },
        token: { type: 'string' },
        data: { type: 'object' },
        code: { type: 'string' },
        message: { type: 'string' },
      },
    },
  },
} as const;

/** The server URL without the base path (the paths carry it), e.g. the engine's `baseUrl`. */
function serverRoot(url: string, base: string): string {
  const trimmed = url.replace(/\/+$/, '');
  return base !== '' && trimmed.endsWith(base) ? trimmed.slice(0, -base.length) : trimmed;
}

/**
 * Builds the OpenAPI 3.1 document of the service.
 *
 * @param options - base path, server URL and auth to describe.
 * @returns a fresh plain object (safe to modify).
 * @example
 * ```ts
 * const doc = createOpenApiDocument({ basePath: '/hooks', serverUrl: 'https://orders.example.com' });
 * ```
 */
export function createOpenApiDocument(options: OpenApiOptions = {}): OpenApiDocument {
  const base = options.basePath ?? '';
  const security: Record<string, unknown>[] = [];
  const securitySchemes: Record<string, unknown> = {};
  if (options.auth?.bearer) {
    securitySchemes.bearer = { type: 'http', scheme: 'bearer' };
    security.push({ bearer: [] });
  }
  if (options.auth?.hmac) {
    securitySchemes.signature = {
      type: 'apiKey',
      in: 'header',
      name: options.auth.hmac.header,
      description:
        '`t=<unix seconds>,v2=<hex>` (several `v2` allowed, one per secret during a rotation): the hex is HMAC-SHA256, with the shared secret, of these lines, each ending in a line feed: `v2`, the timestamp, the method, the path with query as sent, one `name:value` line per `Content-Type`, `Callback-Dedup-Key` and `ce-*` header sent (names lower-cased, lines sorted), an empty line; then the raw body (an empty body signs nothing after the empty line). The timestamp must be within the replay window (default 300 s). With bearer auth also required, a request needs both.',
    };
    security.push({ signature: [] });
  }
  const secured = security.length > 0 ? { security } : {};
  const doc = {
    openapi: '3.1.0',
    info: {
      title: 'callback-engine Dispatch Callback Service',
      version: '1.0.0',
      description:
        'Outside parties report on pending work: with a CALLBACK message, by POSTing to a callback URL, or with a CloudEvent. Every answer is `{ status, token, data }`: the status after handling.',
    },
    ...(options.serverUrl === undefined
      ? {}
      : { servers: [{ url: serverRoot(options.serverUrl, base) }] }),
    paths: {
      [`${base}/callbacks`]: {
        post: {
          operationId: 'dispatch',
          summary: 'Deliver a CALLBACK message (a report, or a getCallback or exists read)',
          ...secured,
          parameters: [DEDUP_PARAM],
          requestBody: { required: true, content: jsonContent(ref('CallbackMessage')) },
          responses: DISPATCH_RESPONSES,
        },
      },
      [`${base}/callbacks/{token}`]: {
        get: {
          operationId: 'getCallback',
          summary: 'Read a callback',
          ...secured,
          parameters: [TOKEN_PARAM],
          responses: {
            '200': reply('The callback.', 'Answer'),
            '404': DISPATCH_RESPONSES['404'],
            '401': ERROR_RESPONSES['401'],
            '503': ERROR_RESPONSES['503'],
          },
          callbacks: {
            report: {
              '{$url}/{status}': {
                post: {
                  ...REPORT_OPERATION,
                  description: `This operation's URL is the callback URL. ${REPORT_OPERATION.description}`,
                  parameters: [STATUS_PARAM, DEDUP_PARAM],
                },
              },
            },
          },
        },
      },
      [`${base}/callbacks/{token}/{status}`]: {
        post: {
          operationId: 'report',
          ...REPORT_OPERATION,
          ...secured,
          parameters: [TOKEN_PARAM, STATUS_PARAM, DEDUP_PARAM],
        },
      },
      [`${base}/events`]: {
        post: {
          operationId: 'receiveEvents',
          summary: 'Receive CloudEvents (binary, structured or batch content mode)',
          description:
            'Binary mode: attributes in `ce-*` headers (`ce-callbacktoken`, `ce-callbackid`, `ce-callbackstatus`, ...), data as a JSON body. Structured: `application/cloudevents+json`. Batch: `application/cloudevents-batch+json`, answered with one result per event.',
          ...secured,
          requestBody: {
            required: true,
            content: {
              'application/cloudevents+json': { schema: ref('CloudEvent') },
              'application/cloudevents-batch+json': {
                schema: { type: 'array', items: ref('CloudEvent') },
              },
              // Binary mode: the data as a JSON body, attributes in `ce-*` headers.
              'application/json': { schema: ref('ReportData') },
            },
          },
          responses: {
            ...DISPATCH_RESPONSES,
            '202': withOutcome(
              'Queued. Several replicas: as for a report. Early event: no callback holds the correlate keys yet, and an anchor that opted in (`early`) holds the event until that callback is created (it is applied then, in arrival order, before `create()` resolves) or until `expiresAt`; the body is `{ status: "queued", anchor, expiresAt }`.',
              'Answer',
            ),
            '403': reply(
              'The event names its callback by `callbackid` or `correlate` keys, not by its token, and the service has no auth and does not trust correlation (`CBE_ERR_UNTRUSTED_CORRELATION`).',
              'Error',
            ),
            '200': {
              description: 'One event: its answer. A batch: one result per event, in order.',
              content: jsonContent({ oneOf: [ref('Answer'), ref('BatchResult')] }),
            },
          },
        },
      },
      [`${base}/openapi.json`]: {
        get: {
          operationId: 'openApi',
          summary: 'This document (behind the same auth as every other route)',
          ...secured,
          responses: {
            '200': {
              description: 'The OpenAPI document.',
              content: jsonContent({ type: 'object' }),
            },
            ...(security.length > 0 ? { '401': ERROR_RESPONSES['401'] } : {}),
          },
        },
      },
    },
    components: {
      schemas: SCHEMAS,
      securitySchemes,
      callbacks: {
        callbackUrl: {
          '{$request.body#/callbackUrl}/{status}': {
            post: { ...REPORT_OPERATION, parameters: [STATUS_PARAM, DEDUP_PARAM] },
          },
        },
      },
    },
  };
  // A deep copy: callers get plain data they may change without touching the shared constants.
  return JSON.parse(JSON.stringify(doc)) as OpenApiDocument;
}

/**
 * The OpenAPI document with default options (no base path, no auth).
 * `components.callbacks.callbackUrl` is meant for an outside service's own API
 * description: a job request carrying `callbackUrl` (from `engine.callbackUrl`)
 * is answered later by `POST {callbackUrl}/{status}`.
 */
export const openApiDocument: OpenApiDocument = deepFreeze(createOpenApiDocument());

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
