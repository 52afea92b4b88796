import { describe, expect, it, vi } from 'vitest';
import { decodeToken, newCallbackId, TokenCodec } from '../src/token.js';

const codec = new TokenCodec('n1', ['k-one-0123456789abcdef']);

describe('tokens', () => {
  it('encodes node, anchor, id and sig as base64url JSON that outside services can read', () => {
    const token = codec.mint('payment', 'abc');
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    const fields = decodeToken(token)!;
    expect(fields).toMatchObject({ node: 'n1', anchor: 'payment', id: 'abc' });
    expect(JSON.parse(Buffer.from(token, 'base64url').toString())).toEqual(fields);
    expect(codec.verify(fields)).toBe(true);
  });

  it('rejects altered fields, other nodes and other secrets', () => {
    const fields = decodeToken(codec.mint('payment', 'abc'))!;
    expect(codec.verify({ ...fields, anchor: 'refund' })).toBe(false);
    expect(codec.verify({ ...fields, id: 'abd' })).toBe(false);
    expect(codec.verify({ ...fields, sig: fields.sig.slice(0, -2) })).toBe(false);
    expect(new TokenCodec('n2', ['k-one-0123456789abcdef']).verify({ ...fields, node: 'n2' })).toBe(
      false,
    );
    expect(new TokenCodec('n1', ['another-secret-0123456']).verify(fields)).toBe(false);
  });

  it('verifies against every secret and signs with the first (rotation)', () => {
    const old = new TokenCodec('n1', ['old-secret-0123456789']);
    const rotated = new TokenCodec('n1', ['new-secret-0123456789', 'old-secret-0123456789']);
    const oldToken = decodeToken(old.mint('a', 'id1'))!;
    expect(rotated.verify(oldToken)).toBe(true);
    const newToken = decodeToken(rotated.mint('a', 'id1'))!;
    expect(newToken.sig).not.toBe(oldToken.sig);
    expect(new TokenCodec('n1', ['new-secret-0123456789']).verify(newToken)).toBe(true);
    expect(old.verify(newToken)).toBe(false);
  });

  it.each([
    ['empty', ''],
    ['not base64', 'not a token!'],
    ['misplaced padding', `${codec.mint('a', 'b')}=x`],
    ['truncated', codec.mint('a', 'b').slice(0, 40)],
    ['JSON array', Buffer.from('[1,2]').toString('base64url')],
    [
      'missing sig',
      Buffer.from(JSON.stringify({ node: 'n1', anchor: 'a', id: 'b' })).toString('base64url'),
    ],
    [
      'numeric id',
      Buffer.from(JSON.stringify({ node: 'n1', anchor: 'a', id: 1, sig: 'x' })).toString(
        'base64url',
      ),
    ],
    ['too long', 'A'.repeat(5000)],
  ])('decodeToken refuses a malformed token (%s)', (_name, token) => {
    expect(decodeToken(token)).toBeUndefined();
  });

  it.each([
    ['padding junk', `${codec.mint('a', 'b')}==`],
    ['trailing junk', `${codec.mint('a', 'b')}x`],
  ])('decodeToken reads or refuses %s, and such a token never verifies', (_name, token) => {
    const fields = decodeToken(token);
    if (fields !== undefined) expect(codec.verify(fields)).toBe(false);
  });

  it('decodes a token wrapped for transport; a plain signature in it does not verify', () => {
    const fields = decodeToken(codec.mint('a', 'b'))!;
    const wrapped = Buffer.from(
      JSON.stringify({ ...fields, useTransport: true, transport: [{ node: 'edge' }] }),
    ).toString('base64url');
    expect(decodeToken(wrapped)).toMatchObject({
      useTransport: true,
      transport: [{ node: 'edge' }],
    });
    // The plain token's signature with extra fields is another spelling, not a token.
    expect(codec.verify(decodeToken(wrapped)!)).toBe(false);
  });

  it('callbackIds carry 128 random bits and do not repeat', () => {
    const ids = new Set(Array.from({ length: 10_000 }, newCallbackId));
    expect(ids.size).toBe(10_000);
    for (const id of [...ids].slice(0, 10)) {
      expect(id).toMatch(/^[A-Za-z0-9]{8}[A-Za-z0-9_-]{22}$/);
      expect(Buffer.from(id.slice(8), 'base64url')).toHaveLength(16);
    }
  });

  it('callbackIds sort by creation time (a durable store appends them to its indexes)', () => {
    vi.useFakeTimers();
    try {
      // Times across the range, with neighbours that differ in one millisecond and in each digit.
      const times = [0, 1, 61, 62, 3843, 3844, 1_765_000_000_000, 1_765_000_000_001, 62 ** 8 - 1];
      for (let i = 0; i < 200; i++) times.push(Math.floor(Math.random() * 62 ** 8));
      times.sort((a, b) => a - b);
      const ids = times.map((t) => {
        vi.setSystemTime(t);
        return newCallbackId();
      });
      for (let i = 1; i < ids.length; i++) {
        const [a, b] = [ids[i - 1]!.slice(0, 8), ids[i]!.slice(0, 8)];
        if (times[i] === times[i - 1]) expect(a).toBe(b);
        // Byte order, as SQLite's BINARY collation and PostgreSQL's "C" collation compare.
        else expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(-1);
      }
    } finally {
      vi.useRealTimers();
    }
  });
});
