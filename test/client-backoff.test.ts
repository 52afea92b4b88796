/**
 * The client's retry schedule, bounds, abort and errors, with an injected fetch, clock and
 * sleep: no real waiting.
 */
import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  createCallbackClient,
  parseRetryAfter,
  ReportAbortedError,
  ReportBadAnswerError,
  ReportUnavailableError,
  type CallbackClientOptions,
} from '../src/client/index.js';
import { CallbackEngineError } from '../src/index.js';

const BASE = 'http://service.test/hooks';
const T0 = Date.UTC(2026, 0, 1);

type Answer = { status: number; headers?: Record<string, string>; body?: unknown } | 'network';

/** A fetch that plays `answers` in order, and a clock that the injected sleep moves. */
function scripted(answers: Answer[], extra: CallbackClientOptions = {}) {
  let now = T0;
  const delays: number[] = [];
  const requests: { url: string; headers: Headers; body: string }[] = [];
  const options: CallbackClientOptions = {
    baseUrl: BASE,
    baseDelayMs: 100,
    maxDelayMs: 1000,
    clock: { now: () => now },
    random: () => 0.5,
    sleep: async (ms) => {
      delays.push(ms);
      now += ms;
    },
    fetch: async (input, init) => {
      requests.push({
        url: String(input),
        headers: new Headers(init?.headers),
        body: String(init?.body),
      });
      const a = answers.shift();
      if (a === undefined) throw new Error('no more scripted answers');
      if (a === 'network')
        throw new TypeError('fetch failed', {
          cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }),
        });
      return new Response(a.body === undefined ? null : JSON.stringify(a.body), {
        status: a.status,
        headers: { 'content-type': 'application/json', ...a.headers },
      });
    },
    ...extra,
  };
  return {
    client: createCallbackClient(options),
    delays,
    requests,
    advance: (ms: number) => (now += ms),
  };
}

const applied = {
  status: 200,
  headers: { 'callback-outcome': 'applied' },
  body: { status: 'progress', token: 'tok', data: { a: 1 } },
};
const unavailable = (retryAfter?: string): Answer => ({
  status: 503,
  headers: retryAfter === undefined ? {} : { 'retry-after': retryAfter },
  body: { code: 'CBE_ERR_STORE_UNAVAILABLE', message: 'busy' },
});

describe('client backoff schedule', () => {
  it('full jitter: a random delay under base·2^(n-1), capped at maxDelayMs', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, 100, 1000, 0.5))).toEqual([
      50, 100, 200, 400, 500, 500,
    ]);
    expect(backoffDelay(3, 100, 1000, 0)).toBe(0);
    expect(backoffDelay(3, 100, 1000, 0.999)).toBe(399);
    expect(backoffDelay(200, 100, 1000, 0.5)).toBe(500);
  });

  it('parses Retry-After as seconds or an HTTP date, and ignores malformed values', () => {
    expect(parseRetryAfter('7', T0)).toBe(7000);
    expect(parseRetryAfter(' 0 ', T0)).toBe(0);
    expect(parseRetryAfter(new Date(T0 + 12_000).toUTCString(), T0)).toBe(12_000);
    expect(parseRetryAfter(new Date(T0 - 5000).toUTCString(), T0)).toBe(0);
    for (const bad of [null, undefined, '', '-1', '1.5', 'soon', '1e3'])
      expect(parseRetryAfter(bad, T0)).toBeUndefined();
  });

  it('retries network errors and 5xx with the jittered schedule, then answers', async () => {
    const { client, delays, requests } = scripted([
      'network',
      unavailable(),
      { status: 502 },
      { status: 500, body: { code: 'CBE_ERR_INTERNAL', message: 'internal error' } },
      applied,
    ]);
    const r = await client.report('tok', 'progress', { a: 1 });
    expect(r).toMatchObject({ kind: 'applied', status: 'progress', attempts: 5, statusCode: 200 });
    expect(delays).toEqual([50, 100, 200, 400]);
    expect(requests.map((q) => q.url)).toEqual(
      Array(5).fill('http://service.test/hooks/callbacks/tok/progress'),
    );
    expect(new Set(requests.map((q) => q.headers.get('callback-dedup-key'))).size).toBe(1);
    expect(requests.every((q) => q.body === '{"a":1}')).toBe(true);
  });

  it('waits at least what Retry-After asks for (seconds and HTTP date), jitter above it', async () => {
    const { client, delays } = scripted([
      unavailable('2'),
      unavailable(new Date(T0 + 2000 + 5000).toUTCString()),
      unavailable('0'),
      { status: 429, headers: { 'retry-after': '1' } },
      applied,
    ]);
    const r = await client.report('tok', 'progress');
    expect(r.attempts).toBe(5);
    // 2 s; then the date 5 s after the clock (moved by the first wait); then jitter wins over 0; then 1 s.
    expect(delays).toEqual([2000, 5000, 200, 1000]);
  });

  it('gives up after maxAttempts with a retryable ReportUnavailableError carrying the dedup key', async () => {
    const { client, delays } = scripted(Array<Answer>(3).fill(unavailable()), { maxAttempts: 3 });
    const err = await client
      .report('tok', 'complete', {}, { dedupKey: 'job-9' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReportUnavailableError);
    expect(err).toMatchObject({
      code: 'CBE_ERR_REPORT_UNAVAILABLE',
      retryable: true,
      attempts: 3,
      statusCode: 503,
      dedupKey: 'job-9',
    });
    expect((err as Error).message).toMatch(/maxAttempts 3/);
    expect(delays).toEqual([50, 100]);
  });

  it('does not wait past maxElapsedMs, nor for a Retry-After beyond it', async () => {
    const { client, delays } = scripted(Array<Answer>(10).fill(unavailable()), {
      maxElapsedMs: 300,
      maxDelayMs: 100_000,
    });
    const err = await client.report('tok', 'progress').catch((e: unknown) => e);
    // 50 + 100 = 150 waited; the next (200) would end at 350 > 300.
    expect(delays).toEqual([50, 100]);
    expect(err).toMatchObject({ code: 'CBE_ERR_REPORT_UNAVAILABLE', attempts: 3 });
    expect((err as Error).message).toMatch(/maxElapsedMs 300/);

    const far = scripted([unavailable('3600')], { maxElapsedMs: 60_000 });
    const e2 = await far.client.report('tok', 'progress').catch((e: unknown) => e);
    expect(far.delays).toEqual([]);
    expect((e2 as Error).message).toMatch(/Retry-After asks for 3600000 ms/);
  });

  it('an attempt that gets no answer within attemptTimeoutMs is retried', async () => {
    let calls = 0;
    const client = createCallbackClient({
      baseUrl: BASE,
      attemptTimeoutMs: 20,
      sleep: async () => {},
      fetch: (_input, init) => {
        calls++;
        if (calls === 1)
          return new Promise((_resolve, reject) =>
            init!.signal!.addEventListener('abort', () => reject(init!.signal!.reason as Error)),
          );
        return Promise.resolve(
          new Response(JSON.stringify(applied.body), { status: 200, headers: applied.headers }),
        );
      },
    });
    const r = await client.report('tok', 'progress');
    expect(r.attempts).toBe(2);
  });

  it('stops at once when the signal aborts: during a wait, and before the first attempt', async () => {
    const controller = new AbortController();
    const { client, requests } = scripted([unavailable(), applied], {
      sleep: async (_ms, signal) => {
        controller.abort(new Error('shutting down'));
        if (signal?.aborted) throw signal.reason;
      },
    });
    const err = await client
      .report('tok', 'progress', {}, { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReportAbortedError);
    expect(err).toMatchObject({ code: 'CBE_ERR_REPORT_ABORTED', attempts: 1 });
    expect((err as Error).cause).toMatchObject({ message: 'shutting down' });
    expect(requests).toHaveLength(1);

    const again = await client
      .report('tok', 'progress', {}, { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(again).toMatchObject({ code: 'CBE_ERR_REPORT_ABORTED', attempts: 0 });
    expect(requests).toHaveLength(1);
  });

  it('answers that are not callback answers are ReportBadAnswerError, not retried', async () => {
    const html = scripted([{ status: 200, headers: { 'content-type': 'text/html' } }]);
    const e1 = await html.client.report('tok', 'progress').catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(ReportBadAnswerError);
    expect(e1).toMatchObject({ code: 'CBE_ERR_REPORT_BAD_ANSWER', attempts: 1, retryable: false });

    const redirect = scripted([{ status: 307, headers: { location: 'http://elsewhere.test/' } }]);
    const e2 = await redirect.client.report('tok', 'progress').catch((e: unknown) => e);
    expect((e2 as Error).message).toMatch(/redirects are not followed/);

    const big = scripted(
      [{ ...applied, body: { ...applied.body, data: { x: 'y'.repeat(200) } } }],
      {
        maxAnswerBytes: 100,
      },
    );
    const e3 = await big.client.report('tok', 'progress').catch((e: unknown) => e);
    expect((e3 as Error).message).toMatch(/maxAnswerBytes/);
  });

  it('a 404 that is not about the callback (a wrong base URL) is refused, not notFound', async () => {
    const { client } = scripted([
      { status: 404, body: { code: 'CBE_ERR_ROUTE_NOT_FOUND', message: 'no route' } },
    ]);
    const err = await client.report('tok', 'progress').catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'CBE_ERR_REPORT_REFUSED',
      serverCode: 'CBE_ERR_ROUTE_NOT_FOUND',
      statusCode: 404,
    });
  });

  it('a 202 is queued, with the last known state', async () => {
    const { client } = scripted([
      {
        status: 202,
        headers: { 'callback-outcome': 'queued' },
        body: { status: 'start', token: 'tok', data: { a: 1 } },
      },
    ]);
    expect(await client.report('tok', 'progress')).toMatchObject({
      kind: 'queued',
      status: 'start',
      statusCode: 202,
    });
  });
});

describe('client option and argument checks', () => {
  const invalid = (options: unknown, message: RegExp) => {
    let err: unknown;
    try {
      createCallbackClient(options as CallbackClientOptions);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CallbackEngineError);
    expect(err).toMatchObject({ code: 'CBE_ERR_INVALID_ARGUMENT' });
    expect((err as Error).message).toMatch(message);
  };

  it('refuses each invalid option with its name and value', () => {
    invalid(
      { baseUrl: 'ftp://x' },
      /options\.baseUrl must be an http\(s\) URL \(got "ftp:\/\/x"\)/,
    );
    invalid({ baseUrl: 'nope' }, /options\.baseUrl must be an absolute http\(s\) URL/);
    invalid({ baseUrl: 'http://x/?a=1' }, /must not carry a query/);
    invalid({ maxAttempts: 0 }, /options\.maxAttempts must be an integer of at least 1 \(got 0\)/);
    invalid({ baseDelayMs: -1 }, /options\.baseDelayMs must be an integer of at least 0/);
    invalid({ baseDelayMs: 500, maxDelayMs: 100 }, /options\.maxDelayMs \(100\) must not be below/);
    invalid({ maxElapsedMs: 1.5 }, /options\.maxElapsedMs/);
    invalid({ attemptTimeoutMs: '5s' }, /options\.attemptTimeoutMs .*\(got "5s"\)/);
    invalid({ auth: {} }, /options\.auth must set bearer, hmac, or both/);
    invalid({ auth: { bearer: 'has space' } }, /options\.auth\.bearer/);
    invalid({ auth: { hmac: { secret: '' } } }, /options\.auth\.hmac\.secret/);
    invalid(
      { auth: { hmac: { secret: 's', header: 'bad header' } } },
      /options\.auth\.hmac\.header/,
    );
    invalid({ auth: { token: 'x' } }, /options\.auth has an unknown key "token"/);
    invalid({ fetch: 'fetch' }, /options\.fetch must be a function/);
    invalid({ clock: {} }, /options\.clock must be an object with now\(\)/);
    invalid({ headers: { 'x-a': 1 } }, /options\.headers must map header names to strings/);
    invalid({ retries: 3 }, /unknown key "retries"/);
  });

  it('refuses bad report arguments before sending anything', async () => {
    const { client, requests } = scripted([]);
    const noBase = createCallbackClient();
    const cases: [Promise<unknown>, RegExp][] = [
      [client.report('tok', 'timeout' as never), /status must be one of accept, start/],
      [client.report('tok', 'progress', [] as never), /report data must be a JSON object/],
      [
        client.report('tok', 'progress', {}, { dedupKey: '' }),
        /dedupKey must be a string of 1 to 200/,
      ],
      [noBase.report('tok', 'progress'), /reporting by token needs options\.baseUrl/],
      [client.sendEvent({ type: '', source: '/s' }), /event\.type must be a non-empty string/],
      [
        client.sendEvent({ type: 't', source: '/s', extensions: { Bad: 'x' } }),
        /"Bad" is not an extension attribute name/,
      ],
      [noBase.sendEvent({ type: 't', source: '/s' }), /sendEvent needs options\.baseUrl/],
    ];
    for (const [p, message] of cases) {
      const err = await p.catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'CBE_ERR_INVALID_ARGUMENT' });
      expect((err as Error).message).toMatch(message);
    }
    expect(requests).toHaveLength(0);
  });

  it('binary mode percent-encodes ce-* header values and puts the data in the body', async () => {
    const { client, requests } = scripted([applied]);
    await client.sendEvent(
      {
        id: 'evt-1',
        type: 'done',
        source: '/a b',
        callbackToken: 'tok',
        callbackStatus: 'complete',
        data: { ok: true },
        extensions: { note: 'naïve "x" 100%' },
      },
      { mode: 'binary' },
    );
    const h = requests[0]!.headers;
    expect(h.get('ce-specversion')).toBe('1.0');
    expect(h.get('ce-id')).toBe('evt-1');
    expect(h.get('ce-source')).toBe('/a%20b');
    expect(h.get('ce-note')).toBe('na%C3%AFve%20%22x%22%20100%25');
    expect(h.get('ce-callbackstatus')).toBe('complete');
    expect(h.get('content-type')).toBe('application/json');
    expect(requests[0]!.body).toBe('{"ok":true}');
    expect(requests[0]!.url).toBe('http://service.test/hooks/events');
  });
});
