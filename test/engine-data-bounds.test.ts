import { PassThrough } from 'node:stream';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { send } from '../src/http/respond.js';
import { PayloadTooLargeError, type CallbackEngine } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';
import { jsonOf, serviceFixture } from './helpers/http.js';

const KB = (n: number) => 'x'.repeat(n * 1024);

let engine: CallbackEngine | undefined;
afterEach(async () => {
  await engine?.close();
  engine = undefined;
});

describe('maxCallbackBytes (issue 11, finding 5)', () => {
  it('refuses a report that would make the merged data too large, with nothing applied', async () => {
    ({ engine } = makeEngine({ maxCallbackBytes: 100 * 1024 }));
    let steps = 0;
    engine.anchor('job', { next: { progress: () => void steps++ } });
    const cb = await engine.create('job', { timeout: false });
    for (let i = 0; i < 4; i++)
      await engine.dispatch(report(cb.token, 'progress', { [`k${i}`]: KB(20) }));
    expect(steps).toBe(4);
    const refused = engine.dispatch(report(cb.token, 'progress', { k9: KB(30) }));
    await expect(refused).rejects.toBeInstanceOf(PayloadTooLargeError);
    await expect(refused).rejects.toMatchObject({
      code: 'CBE_ERR_PAYLOAD_TOO_LARGE',
      statusCode: 413,
      message: expect.stringMatching(
        /^callbackData would make the callback's data \d+ bytes of JSON, over the limit of 102400 \(maxCallbackBytes\)$/,
      ),
    });
    const now = await engine.get(cb.token);
    expect(now.status).toBe('progress');
    expect(Object.keys(now.data)).toEqual(['k0', 'k1', 'k2', 'k3']);
    expect(steps).toBe(4);
    // A terminal report is refused the same way: the callback stays active.
    await expect(
      engine.dispatch(report(cb.token, 'complete', { big: KB(30) })),
    ).rejects.toBeInstanceOf(PayloadTooLargeError);
    await expect(engine.cancel(cb.token, { big: KB(30) })).rejects.toBeInstanceOf(
      PayloadTooLargeError,
    );
    expect((await engine.get(cb.token)).status).toBe('progress');
    // Replacing a key does not grow the data: still accepted, however often.
    for (let i = 0; i < 20; i++)
      await engine.dispatch(report(cb.token, 'progress', { k0: KB(20) }));
    expect((await engine.dispatch(report(cb.token, 'complete'))).status).toBe('complete');
  });

  it('refuses creation data over the bound, and a late accept that would be ignored is not refused', async () => {
    ({ engine } = makeEngine({ maxCallbackBytes: 1024 }));
    engine.anchor('job');
    await expect(engine.create('job', { data: { a: KB(2) } })).rejects.toMatchObject({
      code: 'CBE_ERR_PAYLOAD_TOO_LARGE',
      message: expect.stringMatching(/^options\.data would make the callback's data/),
    });
    const cb = await engine.create('job', { data: { a: 'x'.repeat(900) } });
    await engine.dispatch(report(cb.token, 'start'));
    expect((await engine.dispatch(report(cb.token, 'accept', { b: KB(1) }))).status).toBe('start');
  });

  it('step output that would pass the bound fails the step: the callback goes to error', async () => {
    ({ engine } = makeEngine({ maxCallbackBytes: 10 * 1024 }));
    engine.anchor('job', { next: { progress: () => ({ blob: KB(20) }) } });
    const cb = await engine.create('job', { timeout: false });
    const answer = await engine.dispatch(report(cb.token, 'progress', { n: 1 }));
    expect(answer.status).toBe('error');
    expect(answer.data.blob).toBeUndefined();
    expect(String(answer.data.message)).toMatch(
      /^the output of the "progress" step would make the callback's data \d+ bytes of JSON, over the limit of 10240/,
    );
  });

  it('defaults to 1 MiB', async () => {
    ({ engine } = makeEngine({ maxDataBytes: 512 * 1024 }));
    engine.anchor('job');
    const cb = await engine.create('job', { timeout: false });
    await engine.dispatch(report(cb.token, 'progress', { a: KB(500) }));
    await engine.dispatch(report(cb.token, 'progress', { b: KB(500) }));
    await expect(
      engine.dispatch(report(cb.token, 'progress', { c: KB(100) })),
    ).rejects.toMatchObject({ limitBytes: 1024 * 1024 });
  });
});

describe('answers on the wire (issue 11, finding 5)', () => {
  const fixture = serviceFixture();

  it('a report over maxCallbackBytes is answered 413 over HTTP', async () => {
    const { engine: served, url } = await fixture.start((e) => e.anchor('job'));
    const cb = await served.create('job', { timeout: false });
    let last: Response | undefined;
    for (let i = 0; i < 6; i++) {
      last = await fetch(`${url}/callbacks/${encodeURIComponent(cb.token)}/progress`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ [`k${i}`]: KB(200) }),
      });
      if (last.status !== 200) break;
    }
    expect(last!.status).toBe(413);
    expect(await jsonOf(last!)).toMatchObject({ code: 'CBE_ERR_PAYLOAD_TOO_LARGE' });
  });

  it('a body that cannot be serialized is answered 500 with { code, message }, never 200', async () => {
    const out = new PassThrough();
    let status = 0;
    let text = '';
    const res = Object.assign(out, {
      headersSent: false,
      writeHead(code: number) {
        status = code;
        return res;
      },
      end(chunk: string) {
        text = chunk;
        return res;
      },
    }) as unknown as ServerResponse;
    send(res, { statusCode: 200, body: { data: { n: 1n } } });
    expect(status).toBe(0); // written at the end of this event-loop turn, with the turn's other replies
    await new Promise((resolve) => setImmediate(resolve));
    expect(status).toBe(500);
    expect(JSON.parse(text)).toEqual({
      code: 'CBE_ERR_INTERNAL',
      message: 'the answer could not be serialized',
    });
  });
});
