import { expect } from 'vitest';
import {
  CallbackEngineError,
  createCallbackEngine,
  createSimulatedClock,
  type CallbackEngine,
  type CallbackEngineOptions,
  type SimulatedClock,
} from '../../src/index.js';

/** Fixed secret for tests. */
export const SECRET = 'test-secret-0123456789abcdef';

/** An engine on a simulated clock, plus the clock. */
export function makeEngine(options: CallbackEngineOptions = {}): {
  engine: CallbackEngine;
  clock: SimulatedClock;
} {
  const clock = createSimulatedClock();
  const engine = createCallbackEngine({ node: 'test-node', secrets: [SECRET], clock, ...options });
  return { engine, clock };
}

/** Shorthand for a report message. */
export function report(
  token: string,
  callbackStatus: string,
  callbackData?: Record<string, unknown>,
) {
  return { type: 'CALLBACK', callbackToken: token, callbackStatus, callbackData } as never;
}

/** Resolves after every queued microtask and pending I/O callback has run once. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The rejection of `p` (fails the test if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<CallbackEngineError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CallbackEngineError);
    return err as CallbackEngineError;
  }
  throw new Error('expected a rejection, got a resolution');
}
