/**
 * A token is accepted only in its canonical encoding: the exact bytes the engine minted. Any other
 * spelling that decodes to the same fields (extra JSON fields, another key order, whitespace,
 * escapes, base64 padding or the standard alphabet, other spare bits in the signature) is answered
 * `notFound` and counted as forged, in memory and from a durable store, in process and over HTTP.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createCallbackEngine,
  createSimulatedClock,
  decodeToken,
  type CallbackEngine,
} from '../src/index.js';
import { serve, type DispatchServer } from '../src/http/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import { makeEngine, report, SECRET } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
let service: DispatchServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await service?.close();
  await engine?.close();
  engine = service = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const b64url = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');

/** Every re-spelling of `token` that decodes to the same fields, by name. */
function respellings(token: string): [string, string][] {
  const f = decodeToken(token)!;
  const json = Buffer.from(token, 'base64url').toString('utf8');
  const { node, anchor, id, sig } = f;
  // The signature's last character carries 2 spare bits: flip one, the bytes stay the same.
  const last = ALPHABET.indexOf(sig.at(-1)!);
  const otherSig = `${sig.slice(0, -1)}${ALPHABET[last ^ 1]}`;
  const out: [string, string][] = [
    ['an extra field', b64url(JSON.stringify({ node, anchor, id, sig, extra: 1 }))],
    [
      'useTransport: false added',
      b64url(JSON.stringify({ node, anchor, id, sig, useTransport: false })),
    ],
    ['reordered keys', b64url(JSON.stringify({ sig, id, anchor, node }))],
    ['whitespace', b64url(JSON.stringify({ node, anchor, id, sig }, null, 1))],
    ['a trailing newline', b64url(`${json}\n`)],
    ['an escaped character', b64url(json.replace('"node"', '"\\u006eode"'))],
    [
      'other spare bits in the signature',
      b64url(JSON.stringify({ node, anchor, id, sig: otherSig })),
    ],
    ['base64url with padding', `${token}${'='.repeat((4 - (token.length % 4)) % 4)}`],
    // Minted tokens hold only characters whose base64 spelling needs neither + nor / (nor - or _),
    // so standard base64 differs from base64url by its padding.
    ['standard base64', Buffer.from(json, 'utf8').toString('base64')],
  ];
  return out;
}

/** A callback whose token length is not a multiple of 4, so base64 padding makes another string. */
async function respellable(e: CallbackEngine): Promise<{ token: string; id: string }> {
  for (const anchor of ['a', 'ab', 'abc']) {
    const cb = await e.create(anchor, { timeout: false });
    if (cb.token.length % 4 !== 0) return cb;
  }
  throw new Error('no token of a length that padding changes');
}

function anchors(e: CallbackEngine): void {
  for (const anchor of ['a', 'ab', 'abc']) e.anchor(anchor);
}

/** Checks that each re-spelling really is one: another string that decodes to the same fields and bytes. */
function expectRespellings(token: string): [string, string][] {
  const f = decodeToken(token)!;
  const list = respellings(token);
  for (const [name, t] of list) {
    expect(t, name).not.toBe(token);
    const g = decodeToken(t);
    expect(g, name).toBeDefined();
    expect([g!.node, g!.anchor, g!.id], name).toEqual([f.node, f.anchor, f.id]);
    expect(Buffer.from(g!.sig, 'base64url').equals(Buffer.from(f.sig, 'base64url')), name).toBe(
      true,
    );
  }
  return list;
}

describe('re-spelled tokens are refused (spec 4, 16)', () => {
  it('in memory: every re-spelling of a live token is notFound and counted as forged; the token still works', async () => {
    ({ engine } = makeEngine());
    anchors(engine);
    const cb = await respellable(engine);
    const list = expectRespellings(cb.token);
    const forged = engine.stats().forgedTokens;
    for (const [name, token] of list) {
      expect(
        (await engine.dispatch(report(token, 'complete', { stolen: true }))).status,
        name,
      ).toBe('notFound');
      expect((await engine.get(token)).status, name).toBe('notFound');
      expect(await engine.exists(token), name).toBe('notFound');
    }
    expect(engine.stats().forgedTokens - forged).toBe(list.length * 3);
    expect((await engine.get(cb.token)).status).toBe('create');
    expect((await engine.dispatch(report(cb.token, 'progress'))).status).toBe('progress');
  });

  it('in memory: a retained (finished) callback is not readable through a re-spelling', async () => {
    ({ engine } = makeEngine());
    anchors(engine);
    const cb = await respellable(engine);
    await engine.dispatch(report(cb.token, 'complete', { ok: 1 }));
    for (const [name, token] of expectRespellings(cb.token)) {
      const answer = await engine.get(token);
      expect(answer.status, name).toBe('notFound');
      expect(answer.data, name).toEqual({});
    }
    expect((await engine.get(cb.token)).status).toBe('complete');
  });

  it('from a durable store after a restart, and over HTTP: 404 for every re-spelling', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbe-token-canonical-'));
    dirs.push(dir);
    const path = join(dir, 'callbacks.db');
    const open = () => {
      const e = createCallbackEngine({
        node: 'test-node',
        secrets: [SECRET],
        clock: createSimulatedClock(),
        store: sqliteStore({ path }),
      });
      anchors(e);
      return e;
    };
    engine = open();
    const cb = await respellable(engine);
    await engine.close();
    // A new engine on the same file: the callback is in the store only, not in memory.
    engine = open();
    await engine.ready();
    service = await serve(engine);
    const list = expectRespellings(cb.token);
    for (const [name, token] of list) {
      let r = await fetch(`${service.url}/callbacks/${encodeURIComponent(token)}/complete`, {
        method: 'POST',
      });
      expect(r.status, name).toBe(404);
      expect(((await r.json()) as { status: string }).status, name).toBe('notFound');
      r = await fetch(`${service.url}/callbacks/${encodeURIComponent(token)}`);
      expect(r.status, name).toBe(404);
      r = await fetch(`${service.url}/callbacks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'CALLBACK', callbackToken: token, callbackStatus: 'cancel' }),
      });
      expect(r.status, name).toBe(404);
    }
    expect(engine.stats().forgedTokens).toBe(list.length * 3);
    expect((await engine.get(cb.token)).status).toBe('create');
  });
});
