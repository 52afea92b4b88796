/**
 * The registry's lookups in the heap: callbacks in memory by id and by exact token, and the
 * idempotency and correlation keys that name them (memory mode: every callback's; durable mode:
 * resident ones', the store answers for the rest).
 *
 * @module
 */

import type { CallbackRuntime } from './callback-runtime.js';
import type { CallbackRecord } from './record.js';

/** What a token (or an id) names. */
export type Found =
  | { kind: 'live'; rt: CallbackRuntime }
  | { kind: 'retained'; record: CallbackRecord }
  | { kind: 'notFound'; anchor: string | undefined; id: string | undefined };

/** A callback that was found. */
export type Known = Exclude<Found, { kind: 'notFound' }>;

/** Callbacks in memory by id, token and keys. */
export class CallbackIndex {
  /** Active (memory mode) or resident (durable mode) callbacks by id. */
  readonly live = new Map<string, CallbackRuntime>();
  /** Exact token → resident callback: a byte-identical token is one this engine minted, so no decode or HMAC. */
  readonly byToken = new Map<string, CallbackRuntime>();
  /** Idempotency key → callbackId, of every callback (memory mode) or of resident ones (durable). */
  readonly idempotency = new Map<string, string>();
  /** `anchor \0 value \0 value...` → callbackId, for anchors that declare `correlate`. */
  readonly correlation = new Map<string, string>();

  /**
   * Indexes a runtime by id, token and keys. `keepHeld`: a correlation key another callback
   * holds stays its (several replicas: the second one is refused at commit).
   */
  put(rt: CallbackRuntime, keepHeld = false): void {
    const record = rt.record;
    this.live.set(record.id, rt);
    this.byToken.set(record.token, rt);
    if (record.idempotencyKey !== undefined) this.idempotency.set(record.idempotencyKey, record.id);
    const corr = record.correlationKey;
    if (corr !== undefined && !(keepHeld && this.correlation.has(corr)))
      this.correlation.set(corr, record.id);
  }

  /** Takes a runtime out of the id and token maps (its keys stay). */
  remove(rt: CallbackRuntime): void {
    this.live.delete(rt.record.id);
    this.byToken.delete(rt.record.token);
  }

  /** Drops a record's keys where they still name it. */
  dropKeys(record: CallbackRecord): void {
    const corrKey = record.correlationKey;
    if (corrKey !== undefined && this.correlation.get(corrKey) === record.id)
      this.correlation.delete(corrKey);
    const idemKey = record.idempotencyKey;
    if (idemKey !== undefined && this.idempotency.get(idemKey) === record.id)
      this.idempotency.delete(idemKey);
  }

  /** Keeps the keys of the runtimes in memory only (the others' are the store's to answer). */
  rekey(): void {
    this.idempotency.clear();
    this.correlation.clear();
    for (const rt of this.live.values()) {
      const r = rt.record;
      if (r.idempotencyKey !== undefined) this.idempotency.set(r.idempotencyKey, r.id);
      if (r.correlationKey !== undefined) this.correlation.set(r.correlationKey, r.id);
    }
  }

  /** Forgets everything. */
  clear(): void {
    this.live.clear();
    this.byToken.clear();
    this.idempotency.clear();
    this.correlation.clear();
  }
}
