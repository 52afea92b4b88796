/**
 * The public shapes of `callback-engine/client`: what a report and an event
 * look like, what they are answered with, and the {@link CallbackClient}
 * interface itself.
 *
 * @module
 */

import type { AnswerStatus, DispatchStatus } from '../lifecycle/statuses.js';

/** A status an outside party may report. */
export type ReportStatus = DispatchStatus;

/**
 * How the service handled a report (its `Callback-Outcome` header):
 * - `applied`: the report moved the callback (status, data, step).
 * - `ignored`: a late or repeated `accept`/`start`; nothing changed (HTTP 200). Not an error:
 *   the callback had already moved past it.
 * - `replayed`: this report (its deduplication key, or the same terminal report) was applied
 *   before; nothing changed again (HTTP 200). A retry whose first attempt got through ends here.
 * - `conflict`: the callback already ended otherwise (HTTP 409); `status` says how
 *   (`cancel`, `timeout`, ...): stop working on it.
 * - `notFound`: the token is unknown, forged, or its record was removed (HTTP 404).
 * - `queued`: accepted durably, applied later in order (HTTP 202): the service runs several
 *   replicas and the callback's owner did not answer in time, or a CloudEvent arrived before
 *   its callback exists and its anchor holds such events.
 */
export type ReportKind = 'applied' | 'ignored' | 'replayed' | 'conflict' | 'notFound' | 'queued';

/** The answer to a report. */
export interface ReportResult<TData extends object = Readonly<Record<string, unknown>>> {
  /** How the service handled it. */
  readonly kind: ReportKind;
  /**
   * The callback's status after handling (may differ from what was reported: `cancel`,
   * `timeout`, ...); `notFound`; `queued` for a CloudEvent held before its callback exists.
   */
  readonly status: AnswerStatus | 'queued';
  /** The callback's merged data after handling (`{}` for `notFound` and held events). */
  readonly data: TData;
  /** The callback's token, as the service answered it (absent for held events). */
  readonly token: string | undefined;
  /** Requests sent, the answered one included (1 when the first attempt got through). */
  readonly attempts: number;
  /** The HTTP status of the answer (200, 202, 404 or 409). */
  readonly statusCode: number;
  /**
   * The deduplication key the report carried on every attempt (the CloudEvent `id` for
   * events: the service deduplicates events by `source` and `id`).
   */
  readonly dedupKey: string;
}

/** Per-report options. */
export interface ReportOptions {
  /**
   * The deduplication key (1–200 characters), sent on every attempt as `Callback-Dedup-Key`:
   * pass your own (e.g. your job id and step) to keep a report applied once across restarts
   * of your process too. @default a random UUID, made once per report
   */
  dedupKey?: string;
  /** Aborts the report: waits and the request in flight stop, {@link ReportAbortedError}. */
  signal?: AbortSignal;
}

/** A CloudEvent to send with {@link CallbackClient.sendEvent}. */
export interface CallbackEventInput {
  /** The event type; the anchor's `eventTypes` may map it to a status. */
  type: string;
  /** The event source, e.g. `/payments/psp`. */
  source: string;
  /** The event id; with `source` it deduplicates the event. @default a random UUID, made once per event */
  id?: string;
  /** Names the callback by its token (extension `callbacktoken`). */
  callbackToken?: string;
  /** Names the callback by its id (extension `callbackid`; needs auth on the service). */
  callbackId?: string;
  /** The reported status (extension `callbackstatus`); else the anchor maps `type`. */
  callbackStatus?: ReportStatus;
  /** The event data (JSON): the report data. */
  data?: unknown;
  subject?: string;
  /** RFC 3339 timestamp. */
  time?: string;
  /** More extension attributes (names: lower-case letters and digits), e.g. correlation keys. */
  extensions?: Readonly<Record<string, string | number | boolean>>;
}

/** Per-event options. */
export interface EventOptions {
  /**
   * `structured` sends the whole event as the JSON body (`application/cloudevents+json`);
   * `binary` sends attributes as `ce-*` headers and the data as the body. Structured is the
   * default because an HMAC signature covers the body: every attribute is signed.
   * @default 'structured'
   */
  mode?: 'structured' | 'binary';
  /** Where to send it. @default `${baseUrl}/events` */
  url?: string;
  signal?: AbortSignal;
}

/** A client of one callback-engine service. */
export interface CallbackClient {
  /**
   * Reports a status to a callback: `POST {callbackUrl}/{status}` with `data` as the JSON body,
   * retried until a definite answer.
   *
   * @param target - the callback URL the service handed out (`https://…/callbacks/{token}`),
   *   or the token itself (then `baseUrl` is needed).
   * @param status - `accept`, `start`, `progress`, `complete`, `error` or `cancel`.
   * @param data - the report data, a JSON object. @default {}
   * @returns how it was handled: applied, ignored, replayed, conflict, notFound or queued.
   * @throws {@link ReportRefusedError} (4xx), {@link ReportUnavailableError} (retries used up),
   *   {@link ReportAbortedError}, {@link ReportBadAnswerError}; `InvalidArgumentError` for bad
   *   arguments (thrown before anything is sent).
   */
  report<TData extends object = Readonly<Record<string, unknown>>>(
    target: string,
    status: ReportStatus,
    data?: Readonly<Record<string, unknown>>,
    options?: ReportOptions,
  ): Promise<ReportResult<TData>>;
  /**
   * Sends one CloudEvent to the service's `/events` endpoint, retried until a definite answer
   * (the event `id`, made once, deduplicates the retries).
   *
   * @returns how it was handled, as for {@link CallbackClient.report}.
   * @throws as {@link CallbackClient.report}.
   */
  sendEvent<TData extends object = Readonly<Record<string, unknown>>>(
    event: CallbackEventInput,
    options?: EventOptions,
  ): Promise<ReportResult<TData>>;
}
