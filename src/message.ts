/**
 * Validation of CALLBACK messages (spec 11.1).
 *
 * @module
 */

import { describe } from './duration.js';
import { InvalidMessageError } from './errors.js';
import { nearestKey } from './keys.js';
import { DISPATCH_STATUSES, isDispatchStatus, type DispatchStatus } from './lifecycle/statuses.js';

/** A validated message. `data` is still untrusted until ingested. */
export type ParsedMessage =
  | {
      kind: 'report';
      token: string;
      status: DispatchStatus;
      data: unknown;
      dedupKey: string | undefined;
    }
  | { kind: 'read'; token: string; action: ReadAction };

/** The read actions of a CALLBACK message. */
export type ReadAction = 'getCallback' | 'exists';

const ACTION_LIST: readonly ReadAction[] = ['getCallback', 'exists'];
const ACTIONS: ReadonlySet<string> = new Set(ACTION_LIST);
const FIELDS: readonly string[] = [
  'type',
  'callbackToken',
  'callbackStatus',
  'callbackData',
  'callbackAction',
  'dedupKey',
];
const FIELD_SET: ReadonlySet<string> = new Set(FIELDS);

/**
 * Checks the shape of a CALLBACK message.
 *
 * @throws {@link InvalidMessageError} with a message naming the bad field.
 */
export function parseMessage(message: unknown): ParsedMessage {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    throw new InvalidMessageError(
      `a dispatch message must be an object (got ${describe(message)})`,
    );
  }
  const m = message as Record<string, unknown>;
  // A misspelt field (`callbackdata`) would silently drop the report's data: refuse it.
  for (const key in m) {
    if (FIELD_SET.has(key)) continue;
    const near = nearestKey(key, FIELDS);
    throw new InvalidMessageError(
      `unknown field ${JSON.stringify(key)} in the message${near === undefined ? `; known fields: ${FIELDS.join(', ')}` : ` (did you mean ${JSON.stringify(near)}?)`}`,
    );
  }
  if (m.type !== 'CALLBACK') {
    throw new InvalidMessageError(`message.type must be "CALLBACK" (got ${describe(m.type)})`);
  }
  if (typeof m.callbackToken !== 'string') {
    throw new InvalidMessageError(
      `message.callbackToken must be a string (got ${describe(m.callbackToken)})`,
    );
  }
  const hasAction = m.callbackAction !== undefined;
  const hasStatus = m.callbackStatus !== undefined;
  if (hasAction && hasStatus) {
    throw new InvalidMessageError(
      'message must carry either callbackStatus or callbackAction, not both',
    );
  }
  if (hasAction) {
    if (typeof m.callbackAction !== 'string' || !ACTIONS.has(m.callbackAction)) {
      throw new InvalidMessageError(
        `message.callbackAction must be one of ${ACTION_LIST.join(', ')} (got ${describe(m.callbackAction)})`,
      );
    }
    return { kind: 'read', token: m.callbackToken, action: m.callbackAction as ReadAction };
  }
  if (!isDispatchStatus(m.callbackStatus)) {
    throw new InvalidMessageError(
      `message.callbackStatus must be one of ${DISPATCH_STATUSES.join(', ')} (got ${describe(m.callbackStatus)})`,
    );
  }
  if (m.callbackStatus === 'error') checkErrorData(m.callbackData);
  const key = m.dedupKey;
  if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 200))
    throw new InvalidMessageError(
      `message.dedupKey must be a string of 1 to 200 characters (got ${describe(key)})`,
    );
  return {
    kind: 'report',
    token: m.callbackToken,
    status: m.callbackStatus,
    data: m.callbackData,
    dedupKey: key,
  };
}

function checkErrorData(data: unknown): void {
  if (typeof data !== 'object' || data === null) return;
  const d = data as Record<string, unknown>;
  const bad = (field: string, type: string): never => {
    throw new InvalidMessageError(
      `callbackData.${field} of an error report must be a ${type} (got ${describe(d[field])})`,
    );
  };
  if (d.message !== undefined && typeof d.message !== 'string') bad('message', 'string');
  if (d.errorNumber !== undefined && typeof d.errorNumber !== 'number')
    bad('errorNumber', 'number');
  if (d.errorDescription !== undefined && typeof d.errorDescription !== 'string')
    bad('errorDescription', 'string');
}
