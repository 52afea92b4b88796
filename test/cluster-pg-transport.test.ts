/**
 * The forwarding transport over PostgreSQL LISTEN/NOTIFY: request-reply, messages past one
 * NOTIFY payload, many in flight, no responder, broadcast, and a connection cut under it.
 */
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { channelOf, chunkUtf8, PgTransport } from '../src/cluster/pg-transport.js';
import { PG, pgAvailable } from './helpers/postgres.js';

describe('chunkUtf8', () => {
  it('cuts on character boundaries, each piece within the byte limit, and joins back', () => {
    const text = `${'a'.repeat(10)}é€😀`.repeat(50);
    for (const max of [4, 5, 7, 100]) {
      const parts = chunkUtf8(text, max);
      expect(parts.join('')).toBe(text);
      for (const p of parts) {
        expect(Buffer.byteLength(p)).toBeLessThanOrEqual(max);
        expect(p).not.toContain('\uFFFD');
      }
    }
    expect(chunkUtf8('short', 100)).toEqual(['short']);
  });

  it('names channels as identifiers PostgreSQL keeps whole (under 64 bytes)', () => {
    const c = channelOf('cbe.test.schema', 'node with spaces, dots. and * wildcards');
    expect(c).toMatch(/^cbe_[0-9a-f]{40}$/);
    expect(channelOf('cbe.test.schema', 'a')).not.toBe(channelOf('cbe.test.other', 'a'));
  });
});

const open: PgTransport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

let n = 0;
async function pair(options: { chunkBytes?: number } = {}) {
  const prefix = `cbe.transport-test.${process.pid}.${++n}`;
  const connect = (name: string) =>
    PgTransport.connect({ connectionString: PG, prefix, name: `cbe-test:${name}`, ...options });
  const owner = await connect('owner');
  const entry = await connect('entry');
  open.push(owner, entry);
  return { owner, entry, prefix };
}

describe.skipIf(!pgAvailable)('PgTransport (PostgreSQL LISTEN/NOTIFY)', () => {
  it('a node given at connect is LISTENed on before connect resolves; requests before serve() wait for it', async () => {
    const prefix = `cbe.transport-test.${process.pid}.${++n}`;
    const owner = await PgTransport.connect({
      connectionString: PG,
      prefix,
      name: 'cbe-test:o',
      node: 'z',
    });
    const entry = await PgTransport.connect({ connectionString: PG, prefix, name: 'cbe-test:e' });
    open.push(owner, entry);
    const reply = entry.request('z', 'early', 5000);
    await new Promise((r) => setTimeout(r, 100));
    owner.serve('z', async (payload) => `z got ${payload}`);
    expect(await reply).toBe('z got early');
  });

  it('answers a request from the replica that serves the node', async () => {
    const { owner, entry } = await pair();
    owner.serve('a', async (payload) => `a got ${payload}`);
    await owner.listening();
    expect(await entry.request('a', 'hello', 2000)).toBe('a got hello');
  });

  it('carries requests and replies far past one NOTIFY payload (8000 bytes), multi-byte text intact', async () => {
    const { owner, entry } = await pair();
    owner.serve('a', async (payload) => {
      const parsed = JSON.parse(payload) as { blob: string };
      return JSON.stringify({ length: parsed.blob.length, echo: parsed.blob });
    });
    await owner.listening();
    // A 256 KiB report, as large as the default body limit allows, with multi-byte characters.
    const blob = 'naïve 😀 '.repeat(Math.ceil((256 * 1024) / 13)).slice(0, 256 * 1024);
    const reply = JSON.parse(await entry.request('a', JSON.stringify({ blob }), 10_000)) as {
      length: number;
      echo: string;
    };
    expect(reply.length).toBe(blob.length);
    expect(reply.echo).toBe(blob);
  });

  it('keeps 200 concurrent requests apart (correlation ids), small and chunked mixed', async () => {
    const { owner, entry } = await pair({ chunkBytes: 1000 });
    owner.serve('a', async (payload) => `${payload}!`);
    await owner.listening();
    const payloads = Array.from({ length: 200 }, (_, i) => `${i}:${'x'.repeat((i % 5) * 700)}`);
    const replies = await Promise.all(payloads.map((p) => entry.request('a', p, 10_000)));
    expect(replies).toEqual(payloads.map((p) => `${p}!`));
  });

  it('times out when nobody serves the node', async () => {
    const { entry } = await pair();
    const started = performance.now();
    await expect(entry.request('nobody', 'x', 200)).rejects.toThrow(/no reply from nobody/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
  });

  it('broadcasts to every replica of the prefix, and only to them', async () => {
    const { owner, entry } = await pair();
    const other = await pair();
    const seen: string[] = [];
    owner.onBroadcast(() => seen.push('owner'));
    entry.onBroadcast(() => seen.push('entry'));
    other.owner.onBroadcast(() => seen.push('other'));
    await Promise.all([owner.listening(), entry.listening(), other.owner.listening()]);
    owner.broadcast();
    await vi.waitFor(() => expect(seen.sort()).toEqual(['entry', 'owner']), {
      timeout: 2000,
      interval: 10,
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).not.toContain('other');
  });

  it('fails what is in flight when its connection is cut, reconnects, and serves again', async () => {
    const { owner, entry } = await pair();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    owner.serve('a', async (payload) => {
      if (payload === 'slow') await gate;
      return `ok ${payload}`;
    });
    await owner.listening();
    const slow = entry.request('a', 'slow', 10_000).then(
      () => 'answered',
      (err: Error) => err.message,
    );
    // Cut the entry's connection (as a server restart or a network cut would).
    const admin = new pg.Client({ connectionString: PG });
    await admin.connect();
    try {
      await vi.waitFor(
        async () => {
          const r = await admin.query(
            `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'cbe-test:entry' AND pid <> pg_backend_pid()`,
          );
          expect(r.rowCount).toBeGreaterThan(0);
        },
        { timeout: 2000, interval: 20 },
      );
      expect(await slow).toMatch(/forwarding connection broke/);
      release();
      // Back within the reconnect schedule, LISTENing again.
      await vi.waitFor(
        async () => expect(await entry.request('a', 'again', 500)).toBe('ok again'),
        {
          timeout: 5000,
          interval: 50,
        },
      );
    } finally {
      await admin.end();
    }
  });
});
