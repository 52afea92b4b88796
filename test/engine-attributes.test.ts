import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngine, StepInput } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
afterEach(() => engine.close());

describe('output attributes (spec 7)', () => {
  it('uses the default names', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const parent = await engine.create('job');
    const cb = await engine.create('job', { data: { a: 1 }, parentToken: parent.token });
    expect(cb.attributes).toEqual({
      callbackToken: cb.token,
      callbackParentToken: parent.token,
      callbackData: { a: 1 },
      callbackId: cb.id,
      callbackStatus: 'create',
    });
    const a = await engine.dispatch(report(cb.token, 'start'));
    expect(a.attributes).toMatchObject({ callbackStatus: 'start', callbackToken: cb.token });
  });

  it('renames every attribute per anchor and adds the attributeReference object', async () => {
    ({ engine } = makeEngine());
    let seen: StepInput | undefined;
    engine.anchor('payment', {
      attributes: {
        tokenAttribute: 'paymentToken',
        parentTokenAttribute: 'parentPayment',
        dataAttribute: 'paymentData',
        idAttribute: 'paymentId',
        statusAttribute: 'paymentStatus',
        attributeReference: 'payment',
      },
      next: { progress: (cb) => void (seen = cb) },
    });
    const cb = await engine.create('payment', { data: { orderId: 7 } });
    expect(cb.attributes).toEqual({
      paymentToken: cb.token,
      paymentData: { orderId: 7 },
      paymentId: cb.id,
      paymentStatus: 'create',
      payment: { status: 'create', token: cb.token, data: { orderId: 7 } },
    });
    await engine.dispatch(report(cb.token, 'progress', { pct: 5 }));
    expect(seen!.attributes).toMatchObject({
      paymentStatus: 'progress',
      paymentData: { orderId: 7, pct: 5 },
    });
    expect(seen!.attributes.callbackToken).toBeUndefined();
  });

  it('serializes an answer as exactly { status, token, data }', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job', { attributes: { attributeReference: 'ref' } });
    const cb = await engine.create('job', { data: { a: 1 } });
    const a = await engine.dispatch(report(cb.token, 'accept'));
    expect(JSON.parse(JSON.stringify(a))).toEqual({
      status: 'accept',
      token: cb.token,
      data: { a: 1 },
    });
    const { inspect } = await import('node:util');
    expect(inspect(a)).toContain("status: 'accept'");
    expect(inspect(a)).toContain('a: 1');
  });
});
