/**
 * Callback statuses (spec 3) and the anchor lookup order of steps (spec 6).
 *
 * @module
 */

/** Active statuses, in their only allowed order. */
export const ACTIVE_STATUSES = ['create', 'accept', 'start', 'progress'] as const;
/** Terminal statuses: final once reached. */
export const TERMINAL_STATUSES = ['complete', 'error', 'cancel', 'timeout', 'orphan'] as const;
/** Statuses an outside party may dispatch. */
export const DISPATCH_STATUSES = [
  'accept',
  'start',
  'progress',
  'complete',
  'error',
  'cancel',
] as const;

/** An active status. */
export type ActiveStatus = (typeof ACTIVE_STATUSES)[number];
/** A terminal status. */
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];
/** Any stored status of a callback. */
export type CallbackStatus = ActiveStatus | TerminalStatus;
/** A status an outside party may dispatch. */
export type DispatchStatus = (typeof DISPATCH_STATUSES)[number];
/** Statuses that are answered but never stored. */
export type PseudoStatus = 'notFound' | 'exists';
/** Every status an answer can carry (`exists` only answers `callbackAction: 'exists'`). */
export type AnswerStatus = CallbackStatus | PseudoStatus;

/** Every key a step map (`next`) may hold. */
export type StepKey = CallbackStatus | PseudoStatus | 'active' | 'error' | '*';

const TERMINAL_SET: ReadonlySet<string> = new Set(TERMINAL_STATUSES);
const DISPATCH_SET: ReadonlySet<string> = new Set(DISPATCH_STATUSES);
const ACTIVE_GROUP: ReadonlySet<string> = new Set([...ACTIVE_STATUSES, 'exists']);
const ERROR_GROUP: ReadonlySet<string> = new Set([
  'timeout',
  'orphan',
  'notFound',
  'cancel',
  'error',
]);

/** Every key accepted in an anchor's `next` map. */
export const STEP_KEYS: ReadonlySet<string> = new Set<StepKey>([
  ...ACTIVE_STATUSES,
  ...TERMINAL_STATUSES,
  'notFound',
  'exists',
  'active',
  '*',
]);

/** Whether `status` is terminal. */
export function isTerminal(status: string): status is TerminalStatus {
  return TERMINAL_SET.has(status);
}

/** Whether an outside party may dispatch `status`. */
export function isDispatchStatus(status: unknown): status is DispatchStatus {
  return typeof status === 'string' && DISPATCH_SET.has(status);
}

/**
 * Finds the entry of a step map for a status, in spec order: the exact status,
 * then its group default (`active` or `error`), then `*`.
 *
 * @returns the entry, or `undefined` when none applies. An entry of `false` means "explicitly nothing".
 */
export function lookupStep<T>(
  next: Readonly<Partial<Record<StepKey, T>>>,
  status: CallbackStatus | PseudoStatus,
): T | undefined {
  if (next[status] !== undefined) return next[status];
  if (ACTIVE_GROUP.has(status) && next.active !== undefined) return next.active;
  if (ERROR_GROUP.has(status) && next.error !== undefined) return next.error;
  return next['*'];
}

/**
 * Which key of a step map applies to a status, in the same order as {@link lookupStep}: the
 * exact status, then its group default (`active` or `error`), then `*`.
 *
 * @returns the key, or `undefined` when none applies.
 */
export function stepKeyFor(
  next: Readonly<Partial<Record<StepKey, unknown>>>,
  status: CallbackStatus | PseudoStatus,
): StepKey | undefined {
  if (next[status] !== undefined) return status;
  if (ACTIVE_GROUP.has(status) && next.active !== undefined) return 'active';
  if (ERROR_GROUP.has(status) && next.error !== undefined) return 'error';
  return next['*'] !== undefined ? '*' : undefined;
}
