import { afterEach, describe, expect, it, vi } from 'vitest';
import { createCallbackEngine, createSimulatedClock, InvalidArgumentError } from '../src/index.js';
import { report } from './helpers/engine.js';

afterEach(() => vi.restoreAllMocks());

describe('the logger option (pino-compatible)', () => {
  it('gets every warning with its code and fields, and process.emitWarning gets none', async () => {
    const emitted = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const lines: { obj: Record<string, unknown>; msg: string }[] = [];
    const logger = {
      warn: (obj: Record<string, unknown>, msg: string) => lines.push({ obj, msg }),
    };
    const engine = createCallbackEngine({ logger, clock: createSimulatedClock() });
    engine.anchor('pay', {
      next: {
        complete: () => {
          throw new Error('receipt service down');
        },
      },
    });
    engine.subscribe(() => {
      throw new Error('listener bug');
    });
    const cb = await engine.create('pay');
    await engine.dispatch(report(cb.token, 'complete'));
    await engine.close();
    const codes = lines.map((l) => l.obj.code);
    expect(codes).toContain('CBE_W_RANDOM_SECRET');
    expect(codes).toContain('CBE_W_LISTENER');
    const failed = lines.find((l) => l.obj.code === 'CBE_W_STEP_FAILED_AFTER_TERMINAL')!;
    expect(failed.obj).toMatchObject({ anchor: 'pay', status: 'complete', id: cb.id });
    expect(failed.msg).toContain('receipt service down');
    const listener = lines.find((l) => l.obj.code === 'CBE_W_LISTENER')!;
    expect(listener.msg).toBe('listener bug');
    expect(listener.obj.err).toBeInstanceOf(Error);
    expect(emitted).not.toHaveBeenCalled();
  });

  it('a logger that throws does not break the engine', async () => {
    const logger = {
      warn: () => {
        throw new Error('log sink down');
      },
    };
    const engine = createCallbackEngine({ logger, secrets: ['0123456789abcdef0123'] });
    engine.anchor('a', {
      next: {
        complete: () => {
          throw new Error('x');
        },
      },
    });
    const cb = await engine.create('a');
    expect((await engine.dispatch(report(cb.token, 'complete'))).status).toBe('complete');
    await engine.close();
  });

  it('refuses something that is not a logger', () => {
    expect(() => createCallbackEngine({ logger: { info() {} } as never })).toThrow(
      new InvalidArgumentError(
        'options.logger must be a logger with a warn(obj, msg) method, such as pino() (got an object)',
      ),
    );
  });
});
