/**
 * What replicas say to each other: the request a replica sends the owner of a
 * callback (a report, a create, a retry), the owner's reply, and the mapping
 * of a reply back to the sending engine's own result or error.
 *
 * @module
 */

import { Answer, type ResolvedAttributes } from '../answer.js';
import { DataVersion, ingestData } from '../data.js';
import { CallbackEngineError, StoreUnavailableError } from '../errors.js';
import { toError } from '../thrown.js';
import type { DispatchResult } from '../types.js';

/** A request one replica sends the owner of a callback. */
export type ForwardRequest =
  | {
      readonly op: 'report';
      /** The callbackId (routing). */
      readonly id: string;
      readonly token: string;
      readonly status: string;
      readonly data: unknown;
      readonly dedupKey: string;
      /**
       * The entry replica minted the key for this delivery (the report came without one): only a
       * copy of it queued later can find it applied.
       */
      readonly minted?: boolean;
      /** A cancel by the engine's own caller (`engine.cancel()`), not by an outside party. */
      readonly caller?: boolean;
      /**
       * Wall-clock ms past which the owner refuses it: the end of the sending replica's view of
       * the cluster when it sent it. A replica that froze after sending (its message still in a
       * buffer) cannot deliver it late.
       */
      readonly notAfter?: number;
    }
  | {
      /** Runs a terminal callback's failed final step again (`engine.retryStep()`). */
      readonly op: 'retry';
      /** The callbackId (routing). */
      readonly id: string;
      readonly tokenOrId: string;
    }
  | {
      readonly op: 'create';
      /** The parent's callbackId (routing). */
      readonly id: string;
      readonly anchor: string;
      readonly options: unknown;
    };

/** The owner's reply. */
export type ForwardReply =
  | {
      readonly kind: 'answer';
      readonly outcome: string;
      readonly answer: {
        status: string;
        token: string;
        data: unknown;
        stepError?: unknown;
      };
      readonly id?: string;
    }
  | {
      readonly kind: 'error';
      readonly code: string;
      readonly statusCode: number;
      readonly message: string;
      readonly retryable: boolean;
    }
  | { readonly kind: 'notOwner' }
  | { readonly kind: 'queued' };

/** An error as a reply: an engine error keeps its code; anything else is a retryable 503. */
export function errorReply(err: unknown): ForwardReply {
  const e = toError(err);
  const ce = e instanceof CallbackEngineError ? e : undefined;
  return {
    kind: 'error',
    code: ce?.code ?? 'CBE_ERR_STORE_UNAVAILABLE',
    statusCode: ce?.statusCode ?? 503,
    message: e.message,
    retryable: ce ? ce.retryable : true,
  };
}

/**
 * The owner's reply as the sending engine's own result: its answer (with the anchor's
 * attribute names), or its error thrown.
 */
export function resultOf(
  reply: ForwardReply,
  attributes: ResolvedAttributes | undefined,
  token: string,
): DispatchResult {
  if (reply.kind === 'error') {
    if (reply.code === 'CBE_ERR_STORE_UNAVAILABLE') throw new StoreUnavailableError(reply.message);
    throw new CallbackEngineError(
      reply.code as CallbackEngineError['code'],
      reply.statusCode,
      reply.message,
      { retryable: reply.retryable },
    );
  }
  if (reply.kind !== 'answer')
    throw new StoreUnavailableError('the owner of the callback did not answer; retry');
  const a = reply.answer;
  const data = ingestData('answer data', a.data, Number.MAX_SAFE_INTEGER);
  const answer = new Answer(
    a.status as Answer['status'],
    a.token || token,
    DataVersion.of(data),
    attributes,
    reply.id,
    undefined,
    a.stepError as Answer['stepError'],
  );
  return { answer, outcome: reply.outcome as DispatchResult['outcome'] };
}
