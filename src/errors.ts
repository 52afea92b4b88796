/**
 * The one error catalogue of callback-engine.
 *
 * Every error the engine raises is a {@link CallbackEngineError} with a stable
 * string `code` (`CBE_ERR_...`) to branch on and an HTTP `statusCode` the
 * Dispatch Callback Service maps directly. Turning whatever was thrown into
 * a safe `Error` (`toError`, `toStepError`) is in `thrown.ts`.
 *
 * @module
 */

/** Stable error codes. Never renamed once released. */
export type CallbackEngineErrorCode =
  | 'CBE_ERR_INVALID_ARGUMENT'
  | 'CBE_ERR_INVALID_MESSAGE'
  | 'CBE_ERR_INVALID_DATA'
  | 'CBE_ERR_PAYLOAD_TOO_LARGE'
  | 'CBE_ERR_UNKNOWN_ANCHOR'
  | 'CBE_ERR_PARENT_NOT_FOUND'
  | 'CBE_ERR_PARENT_INACTIVE'
  | 'CBE_ERR_ALREADY_SETTLED'
  | 'CBE_ERR_POOL_SATURATED'
  | 'CBE_ERR_ENGINE_CLOSED'
  | 'CBE_ERR_STEP_TIMEOUT'
  | 'CBE_ERR_STORE_UNAVAILABLE'
  | 'CBE_ERR_STORE_LOCKED'
  | 'CBE_ERR_STORE_INCOMPATIBLE'
  | 'CBE_ERR_DUPLICATE_KEY'
  | 'CBE_ERR_EARLY_EVENTS_FULL'
  | 'CBE_ERR_ORIGIN_UNAVAILABLE'
  | 'CBE_ERR_ORIGIN_REFUSED'
  | 'CBE_ERR_NOTHING_TO_RETRY';

/** Options accepted by every error constructor. */
export interface CallbackEngineErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * Base class of every error the engine raises.
 *
 * @example
 * ```ts
 * try { await engine.dispatch(message); }
 * catch (err) {
 *   if (err instanceof CallbackEngineError && err.code === 'CBE_ERR_INVALID_MESSAGE') { ... }
 * }
 * ```
 */
export class CallbackEngineError extends Error {
  /** Stable machine-readable code. */
  readonly code: CallbackEngineErrorCode;
  /** The HTTP status the Dispatch Callback Service answers with. */
  readonly statusCode: number;
  /** Whether the same call may succeed if retried later. */
  readonly retryable: boolean;

  constructor(
    code: CallbackEngineErrorCode,
    statusCode: number,
    message: string,
    options: CallbackEngineErrorOptions & { retryable?: boolean } = {},
  ) {
    super(message, 'cause' in options ? { cause: options.cause } : undefined);
    this.code = code;
    this.statusCode = statusCode;
    this.retryable = options.retryable ?? false;
  }

  override get name(): string {
    return this.constructor.name;
  }

  /** The JSON body the HTTP service sends: `{ code, message }`. */
  toJSON(): { code: CallbackEngineErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** An option or argument has the wrong type or value. HTTP 400. */
export class InvalidArgumentError extends CallbackEngineError {
  constructor(message: string, options?: CallbackEngineErrorOptions) {
    super('CBE_ERR_INVALID_ARGUMENT', 400, message, options);
  }
}

/** A dispatch message is not a well-formed CALLBACK message. HTTP 400. */
export class InvalidMessageError extends CallbackEngineError {
  constructor(message: string, options?: CallbackEngineErrorOptions) {
    super('CBE_ERR_INVALID_MESSAGE', 400, message, options);
  }
}

/** One way data failed an anchor's schema: where (`path`, empty for the root) and what is wrong. */
export interface DataIssue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/**
 * Report or step data is not a JSON-serializable plain object, or does not match the anchor's
 * schema (then `issues` lists why). HTTP 400; nothing was applied.
 */
export class InvalidDataError extends CallbackEngineError {
  /** The schema's issues (at most 20), when the data failed an anchor's `data`/`reports` schema. */
  readonly issues: readonly DataIssue[] | undefined;
  constructor(
    message: string,
    options?: CallbackEngineErrorOptions & { issues?: readonly DataIssue[] },
  ) {
    super('CBE_ERR_INVALID_DATA', 400, message, options);
    this.issues = options?.issues && Object.freeze(options.issues.map((i) => Object.freeze(i)));
  }

  /** `{ code, message }`, plus `issues` when a schema failed. */
  override toJSON(): {
    code: CallbackEngineErrorCode;
    message: string;
    issues?: readonly DataIssue[];
  } {
    return this.issues ? { ...super.toJSON(), issues: this.issues } : super.toJSON();
  }
}

/** Report data (or a request body) is larger than the configured limit. HTTP 413. */
export class PayloadTooLargeError extends CallbackEngineError {
  /** The configured limit, in bytes. */
  readonly limitBytes: number;
  constructor(message: string, limitBytes: number) {
    super('CBE_ERR_PAYLOAD_TOO_LARGE', 413, message);
    this.limitBytes = limitBytes;
  }
}

/** `create` named an anchor that was never registered. HTTP 400. */
export class UnknownAnchorError extends CallbackEngineError {
  constructor(anchor: string) {
    super('CBE_ERR_UNKNOWN_ANCHOR', 400, `anchor "${anchor}" is not registered`);
  }
}

/** `create` named a parent token that is unknown, forged or already removed. HTTP 404. */
export class ParentNotFoundError extends CallbackEngineError {
  constructor(message = 'options.parentToken does not name a known callback') {
    super('CBE_ERR_PARENT_NOT_FOUND', 404, message);
  }
}

/** `create` named a parent callback that is no longer active. HTTP 409. */
export class ParentInactiveError extends CallbackEngineError {
  /** The parent's current status. */
  readonly parentStatus: string;
  constructor(parentStatus: string) {
    super(
      'CBE_ERR_PARENT_INACTIVE',
      409,
      `options.parentToken names a callback that is no longer active (status "${parentStatus}")`,
    );
    this.parentStatus = parentStatus;
  }
}

/** A report reached a callback that is already terminal with another outcome. HTTP 409. */
export class AlreadySettledError extends CallbackEngineError {
  /** The callback's current (terminal) status. */
  readonly currentStatus: string;
  constructor(currentStatus: string) {
    super(
      'CBE_ERR_ALREADY_SETTLED',
      409,
      `callback is no longer active (status "${currentStatus}")`,
    );
    this.currentStatus = currentStatus;
  }
}

/** The worker pool's queue is full; retry later. HTTP 503, retryable. */
export class PoolSaturatedError extends CallbackEngineError {
  constructor(
    message = 'the worker pool queue is full; retry later',
    options?: CallbackEngineErrorOptions,
  ) {
    super('CBE_ERR_POOL_SATURATED', 503, message, { ...options, retryable: true });
  }
}

/** The engine was closed; no further calls are accepted. HTTP 503. */
export class EngineClosedError extends CallbackEngineError {
  constructor() {
    super('CBE_ERR_ENGINE_CLOSED', 503, 'the callback engine is closed');
  }
}

/**
 * The durable store could not commit (disk full, I/O error, file removed, busy past its timeout)
 * or could not be read. Nothing of the failed batch was acknowledged and the engine's memory was
 * put back to what is committed, so the same call may simply be retried. HTTP 503, retryable.
 */
export class StoreUnavailableError extends CallbackEngineError {
  /** Seconds a client should wait before retrying (the HTTP `Retry-After`). */
  readonly retryAfterSeconds: number;
  constructor(
    message = 'the callback store is unavailable; retry later',
    options?: CallbackEngineErrorOptions,
  ) {
    super('CBE_ERR_STORE_UNAVAILABLE', 503, message, { ...options, retryable: true });
    this.retryAfterSeconds = 1;
  }
}

/**
 * This replica no longer owns the shard of a callback (its lease ended or was taken over), so it
 * commits nothing for it. The same call, retried, reaches the new owner. HTTP 503, retryable.
 */
export class LeaseLostError extends StoreUnavailableError {}

/**
 * A callback could not be created because another active callback holds the same correlation
 * key (keys are unique across a cluster, enforced by the database). HTTP 409.
 */
export class DuplicateKeyError extends CallbackEngineError {
  constructor(message: string, options?: CallbackEngineErrorOptions) {
    super('CBE_ERR_DUPLICATE_KEY', 409, message, options);
  }
}

/**
 * An early event (a CloudEvent that arrived before its callback) was refused because the
 * anchor's hold is full: `early.maxEvents` events or `early.maxBytes` bytes are held already.
 * Nothing was held; the sender should retry later (held events leave when their callback is
 * created or when they expire). HTTP 503 with `Retry-After`, retryable.
 */
export class EarlyEventsFullError extends CallbackEngineError {
  /** The anchor whose hold is full. */
  readonly anchor: string;
  /** Which bound was reached. */
  readonly bound: 'maxEvents' | 'maxBytes';
  constructor(anchor: string, bound: 'maxEvents' | 'maxBytes', message: string) {
    super('CBE_ERR_EARLY_EVENTS_FULL', 503, message, { retryable: true });
    this.anchor = anchor;
    this.bound = bound;
  }
}

/** Another engine holds the store (one engine per SQLite file). HTTP 503. */
export class StoreLockedError extends CallbackEngineError {
  constructor(message: string, options?: CallbackEngineErrorOptions) {
    super('CBE_ERR_STORE_LOCKED', 503, message, options);
  }
}

/**
 * The store was written by another lifecycle-machine version or a newer schema than this
 * engine understands; it is refused rather than misread. HTTP 500.
 */
export class StoreIncompatibleError extends CallbackEngineError {
  constructor(message: string) {
    super('CBE_ERR_STORE_INCOMPATIBLE', 500, message);
  }
}

/**
 * This replica's `secrets` do not match those of the other replicas of its PostgreSQL schema
 * (compared by fingerprint: the keys themselves are never stored), so tokens minted by one
 * replica would not verify on another and reports would be answered `notFound`. `ready()`
 * rejects with it and the replica does not join. The message names the fix: give every replica
 * the same secrets, or rotate in steps (see the README). Code `CBE_ERR_STORE_INCOMPATIBLE`, HTTP 500.
 */
export class SecretMismatchError extends StoreIncompatibleError {}

/**
 * `retryStep()` found no failed step it can run again: the callback is unknown, still active,
 * its latest step did not fail, or the failed step is not the one of its final status. HTTP 409.
 */
export class NothingToRetryError extends CallbackEngineError {
  /** The callback's id (or what was asked for, when it is unknown). */
  readonly callbackId: string;
  constructor(callbackId: string, reason: string) {
    super(
      'CBE_ERR_NOTHING_TO_RETRY',
      409,
      `callback ${callbackId} has no failed step to retry: ${reason}`,
    );
    this.callbackId = callbackId;
  }
}

/**
 * A step ran past its `stepTimeout`. It is the reason its `signal` is aborted with, and the
 * callback moves to `error` with its message. HTTP 504 (it never reaches a client as an error:
 * the report is answered with the callback's `error` status).
 */
export class StepTimeoutError extends CallbackEngineError {
  /** The status the step ran for. */
  readonly stepStatus: string;
  /** The limit, as configured (ISO 8601). */
  readonly limit: string;
  constructor(stepStatus: string, limit: string) {
    super('CBE_ERR_STEP_TIMEOUT', 504, `the "${stepStatus}" step did not settle within ${limit}`);
    this.stepStatus = stepStatus;
    this.limit = limit;
  }
}

/**
 * A report or read for a relayed (wrapped) token could not be forwarded to the engine that owns
 * the callback: connection refused or reset, no answer within the relay timeout, a 5xx, a
 * redirect or an answer that is not a callback answer. Nothing is kept by the relaying engine, so
 * the outside party simply retries (with a `dedupKey` when the origin may have applied it before
 * the connection broke). HTTP 503, retryable.
 */
export class OriginUnavailableError extends CallbackEngineError {
  /** The origin's base URL. */
  readonly origin: string;
  constructor(origin: string, message: string, options?: CallbackEngineErrorOptions) {
    super('CBE_ERR_ORIGIN_UNAVAILABLE', 503, message, { ...options, retryable: true });
    this.origin = origin;
  }
}

/**
 * The engine that owns a relayed callback refused the forwarded request with a 4xx error (bad
 * data for its schema, data too large, auth). Its `statusCode` is the origin's, and its JSON body
 * is the origin's `{ code, message }` as sent, so an outside party behind the relay sees what it
 * would see at the origin. In process, branch on `code` (`CBE_ERR_ORIGIN_REFUSED`) and
 * {@link OriginRefusedError.originCode}.
 */
export class OriginRefusedError extends CallbackEngineError {
  /** The origin's base URL. */
  readonly origin: string;
  /** The `code` of the origin's error body (a callback-engine code such as `CBE_ERR_INVALID_DATA`). */
  readonly originCode: string;
  /** The origin's schema issues, when it refused data that failed an anchor's schema. */
  readonly issues: readonly DataIssue[] | undefined;
  constructor(
    origin: string,
    statusCode: number,
    originCode: string,
    message: string,
    issues?: readonly DataIssue[],
  ) {
    super('CBE_ERR_ORIGIN_REFUSED', statusCode, message);
    this.origin = origin;
    this.originCode = originCode;
    this.issues = issues && Object.freeze(issues.map((i) => Object.freeze(i)));
  }

  /** The origin's error body, as it sent it: `{ code: originCode, message }`, plus its `issues`. */
  override toJSON(): {
    code: CallbackEngineErrorCode;
    message: string;
    issues?: readonly DataIssue[];
  } {
    // The origin runs callback-engine: its codes are this catalogue's or its HTTP layer's.
    const body = { code: this.originCode as CallbackEngineErrorCode, message: this.message };
    return this.issues ? { ...body, issues: this.issues } : body;
  }
}
