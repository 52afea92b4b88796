import { afterEach, describe, expect, it } from 'vitest';
import { createCallbackEngine, decodeToken, type CallbackEngine } from '../src/index.js';
import { makeEngine, report, SECRET } from './helpers/engine.js';

let engine: CallbackEngine;
afterEach(() => engine.close());

function reencode(token: string, change: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify({ ...decodeToken(token), ...change })).toString('base64url');
}

describe('tokens at the call-in point (spec 4)', () => {
  it('answers notFound, never throws, for forged, altered, truncated or non-base64 tokens, and counts forgeries', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    engine.anchor('other');
    const cb = await engine.create('job', { data: { secret: 1 } });
    const bad = [
      reencode(cb.token, {
        sig: decodeToken(cb.token)!.sig.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')),
      }),
      reencode(cb.token, { anchor: 'other' }),
      reencode(cb.token, { node: 'elsewhere' }),
      reencode(cb.token, { id: 'someone-else-id-000000' }),
      cb.token.slice(0, -3),
      `${cb.token}A`,
      '%%%not-base64%%%',
      '',
    ];
    for (const token of bad) {
      const a = await engine.dispatch(report(token, 'complete', { stolen: true }));
      expect(a.status).toBe('notFound');
      expect(a.data).toEqual({});
      expect((await engine.get(token)).status).toBe('notFound');
      expect(await engine.exists(token)).toBe('notFound');
    }
    expect(engine.stats().forgedTokens).toBeGreaterThanOrEqual(4);
    expect((await engine.get(cb.token)).status).toBe('create');
    expect((await engine.get(cb.token)).data).toEqual({ secret: 1 });
  });

  it('refuses a token re-encoded with the same signed fields in another key order (one spelling per token)', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job');
    const f = decodeToken(cb.token)!;
    const reordered = Buffer.from(
      JSON.stringify({ sig: f.sig, id: f.id, anchor: f.anchor, node: f.node }),
    ).toString('base64url');
    expect((await engine.dispatch(report(reordered, 'start'))).status).toBe('notFound');
    expect(engine.stats().forgedTokens).toBe(1);
    expect((await engine.get(cb.token)).status).toBe('create');
  });

  it('rotating secrets keeps old tokens valid; dropping the old secret invalidates them', async () => {
    const a = createCallbackEngine({ node: 'n', secrets: ['old-secret-0123456789'] });
    a.anchor('job');
    const cb = await a.create('job');
    await a.close();
    engine = createCallbackEngine({
      node: 'n',
      secrets: ['new-secret-0123456789', 'old-secret-0123456789'],
    });
    // A different engine knows no records, but a token it can verify is "known-signature notFound", not forged.
    expect((await engine.get(cb.token)).status).toBe('notFound');
    expect(engine.stats().forgedTokens).toBe(0);
    const strict = createCallbackEngine({ node: 'n', secrets: ['new-secret-0123456789'] });
    expect((await strict.get(cb.token)).status).toBe('notFound');
    expect(strict.stats().forgedTokens).toBe(1);
    await strict.close();
  });

  it('resumes the anchor on notFound for a signed token whose record is gone', async () => {
    ({ engine } = makeEngine({ retention: 'PT0S' }));
    const seen: string[] = [];
    engine.anchor('job', {
      next: { notFound: (cb) => (seen.push(cb.status), { hint: 'expired' }) },
    });
    const cb = await engine.create('job');
    await engine.dispatch(report(cb.token, 'complete'));
    const a = await engine.dispatch(report(cb.token, 'progress'));
    expect(a.status).toBe('notFound');
    expect(a.data).toEqual({ hint: 'expired' });
    expect(seen).toEqual(['notFound']);
    // Forged tokens never reach a step.
    await engine.dispatch(report(reencode(cb.token, { sig: 'x'.repeat(43) }), 'progress'));
    expect(seen).toEqual(['notFound']);
    expect(SECRET).toBeTruthy();
  });
});
