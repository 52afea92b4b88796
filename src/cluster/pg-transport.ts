/**
 * Forwarding transport over PostgreSQL LISTEN/NOTIFY, for replicas that have
 * PostgreSQL and no NATS. Request-reply: each replica LISTENs on a channel
 * named after it (hashed: channel names are identifiers of at most 63 bytes)
 * and on a private reply channel; a request carries a correlation id and the
 * reply channel. A message longer than one NOTIFY payload (under 8000 bytes)
 * is cut into chunks sent in one transaction, so they arrive together and in
 * order; the receiver joins them.
 *
 * One dedicated `pg.Client` (not the store's pool), with `synchronous_commit`
 * off since a notification is not durable anyway (measured within noise of
 * on: bench/transport.bench.ts). Sends queued while one is in flight go out
 * together in one statement (one round trip, one transaction): with 64
 * requests in flight this keeps up with NATS; one at a time it takes about
 * twice NATS's latency, and a 64 KiB message about four times. A lost connection fails what
 * is pending (the cluster then queues reports durably) and is re-established.
 *
 * @module
 */

import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import { toError } from '../thrown.js';
import type { RequestHandler, Transport } from './transport.js';

/**
 * Largest NOTIFY payload sent, in bytes: PostgreSQL's limit is "shorter than 8000 bytes"
 * in a default build; this leaves room for the chunk header.
 */
export const PG_NOTIFY_CHUNK_BYTES = 7900;

/** How long parts of a message that never completed are kept (a sender that broke off). */
const PARTIAL_TTL_MS = 60_000;
/**
 * Wait before reconnecting after the connection broke (growing, capped). Short: while this
 * replica is not LISTENing, requests for its callbacks go unanswered until forwardTimeout, and
 * a refused connection costs the server nothing.
 */
const RECONNECT_MS = [50, 100, 250, 500] as const;
/** Longest wait for a connection to open (a server that accepts but does not answer). */
const CONNECT_TIMEOUT_MS = 5000;

/** The channel of a name within a cluster prefix: `cbe_` and 40 hex characters. */
export function channelOf(prefix: string, name: string): string {
  return `cbe_${createHash('sha256').update(`${prefix}\n${name}`, 'utf8').digest('hex').slice(0, 40)}`;
}

/**
 * Cuts `text` into pieces of at most `max` UTF-8 bytes, never inside a character.
 * @internal exported for tests
 */
export function chunkUtf8(text: string, max: number): string[] {
  if (Buffer.byteLength(text, 'utf8') <= max) return [text];
  const bytes = Buffer.from(text, 'utf8');
  const out: string[] = [];
  for (let start = 0; start < bytes.length;) {
    let end = Math.min(bytes.length, start + max);
    // Back up to the first byte of a character (continuation bytes are 10xxxxxx).
    if (end < bytes.length) while (end > start && (bytes[end]! & 0xc0) === 0x80) end--;
    out.push(bytes.toString('utf8', start, end));
    start = end;
  }
  return out;
}

interface Pending {
  resolve(reply: string): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

interface Partial {
  readonly parts: string[];
  got: number;
  readonly at: number;
}

/** Options of {@link PgTransport.connect}. */
export interface PgTransportOptions {
  /** The store's connection string. */
  readonly connectionString: string;
  /** Channel prefix of this cluster (unique per database and schema). */
  readonly prefix: string;
  /** `application_name` of the connection. */
  readonly name: string;
  /** Largest NOTIFY payload sent. @default {@link PG_NOTIFY_CHUNK_BYTES} */
  readonly chunkBytes?: number;
  /**
   * The node this replica serves: its channel is LISTENed on before `connect()` resolves, so no
   * request sent once others learn it owns shards is missed. @default none
   */
  readonly node?: string;
  /** Leave `synchronous_commit` as the server has it (for measurements). @default false */
  readonly synchronousCommit?: boolean;
}

/** PostgreSQL LISTEN/NOTIFY request-reply. */
export class PgTransport implements Transport {
  readonly #options: PgTransportOptions;
  readonly #Client: typeof pg.Client;
  readonly #chunk: number;
  /** This instance's reply channel. */
  readonly #replyChannel: string;
  readonly #broadcastChannel: string;
  readonly #id = randomBytes(8).toString('hex');
  #seq = 0;
  #client: pg.Client | undefined;
  #connecting: Promise<void> | undefined;
  #closed = false;
  #reconnects = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  readonly #channels = new Set<string>();
  readonly #handlers = new Map<string, RequestHandler>();
  readonly #broadcastFns: (() => void)[] = [];
  readonly #pending = new Map<string, Pending>();
  readonly #partials = new Map<string, Partial>();
  #sweep: NodeJS.Timeout | undefined;
  #listened: Promise<void> = Promise.resolve();
  /** Requests that arrived for a served channel before its handler was given. */
  readonly #early: { channel: string; corr: string; reply: string; text: string }[] = [];
  /** Notifications waiting to be sent: channel and payload, in order. */
  #outbox: { channels: string[]; payloads: string[]; settle: ((err?: Error) => void)[] } = {
    channels: [],
    payloads: [],
    settle: [],
  };
  /** The connection a send is in flight on (a new connection need not wait for a dead one). */
  #sendingOn: pg.Client | undefined;

  private constructor(options: PgTransportOptions, Client: typeof pg.Client) {
    this.#options = options;
    this.#Client = Client;
    this.#chunk = options.chunkBytes ?? PG_NOTIFY_CHUNK_BYTES;
    this.#replyChannel = `cbe_r${this.#id}`;
    this.#broadcastChannel = channelOf(options.prefix, '*rebalance');
    this.#channels.add(this.#replyChannel);
    if (options.node !== undefined) this.#channels.add(channelOf(options.prefix, options.node));
  }

  /**
   * Opens the transport's own connection and LISTENs on its reply channel.
   * @throws the connection error when PostgreSQL cannot be reached.
   */
  static async connect(options: PgTransportOptions): Promise<PgTransport> {
    const Client = (await import('pg')).default.Client;
    const transport = new PgTransport(options, Client);
    await transport.#connect();
    transport.#sweep = setInterval(() => transport.#dropStalePartials(), PARTIAL_TTL_MS);
    transport.#sweep.unref();
    return transport;
  }

  /** Connects (or reconnects) and LISTENs on every channel in use. */
  #connect(): Promise<void> {
    this.#connecting ??= (async () => {
      const client = new this.#Client({
        connectionString: this.#options.connectionString,
        application_name: this.#options.name,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        keepAlive: true,
        ...(this.#options.synchronousCommit ? {} : { options: '-c synchronous_commit=off' }),
      });
      client.on('error', (err) => this.#lost(client, err));
      client.on('end', () => this.#lost(client, new Error('the connection ended')));
      client.on('notification', (msg) => this.#onNotification(msg.channel, msg.payload ?? ''));
      try {
        await client.connect();
        const listen = [...this.#channels].map((c) => `LISTEN "${c}";`).join(' ');
        await client.query(listen);
      } catch (err) {
        client.removeAllListeners('end');
        await client.end().catch(() => {});
        throw err;
      }
      this.#client = client;
      this.#reconnects = 0;
      // Whatever was queued while disconnected goes out now.
      this.#flush();
    })().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  /** The connection broke: fail what waits on it, and reconnect. */
  #lost(client: pg.Client, err: Error): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.removeAllListeners('notification');
    client.end().catch(() => {});
    const failure = new Error(`the PostgreSQL forwarding connection broke: ${err.message}`, {
      cause: err,
    });
    for (const [corr, p] of this.#pending) {
      clearTimeout(p.timer);
      this.#pending.delete(corr);
      p.reject(failure);
    }
    this.#failOutbox(failure);
    this.#partials.clear();
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnectTimer) return;
    const wait = RECONNECT_MS[Math.min(this.#reconnects++, RECONNECT_MS.length - 1)];
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed) return;
      this.#connect().catch(() => this.#scheduleReconnect());
    }, wait);
    this.#reconnectTimer.unref();
  }

  /** LISTENs on a channel now if connected (else at the next connect). */
  #listen(channel: string): void {
    if (this.#channels.has(channel)) return;
    this.#channels.add(channel);
    const client = this.#client;
    if (!client) return;
    this.#listened = Promise.all([
      this.#listened,
      client.query(`LISTEN "${channel}"`).then(
        () => {},
        () => {
          // A broken connection is handled by #lost; the next connect LISTENs again.
        },
      ),
    ]).then(() => {});
  }

  /** Resolves once every channel asked for so far is LISTENed on (or the connection broke). */
  listening(): Promise<void> {
    return Promise.all([this.#listened, this.#connecting]).then(() => {});
  }

  serve(node: string, handler: RequestHandler): void {
    const channel = channelOf(this.#options.prefix, node);
    this.#handlers.set(channel, handler);
    this.#listen(channel);
    for (const e of this.#early.splice(0)) this.#handle(e.channel, e.corr, e.reply, e.text);
  }

  request(node: string, payload: string, timeoutMs: number): Promise<string> {
    if (this.#closed) return Promise.reject(new Error('the forwarding transport is closed'));
    if (!this.#client)
      return Promise.reject(new Error('the PostgreSQL forwarding connection is down'));
    const corr = `${this.#id}.${++this.#seq}`;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(corr);
        reject(new Error(`no reply from ${node} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(corr, { resolve, reject, timer });
      this.#send(
        channelOf(this.#options.prefix, node),
        'q',
        corr,
        this.#replyChannel,
        payload,
      ).catch((err: unknown) => {
        const p = this.#pending.get(corr);
        if (!p) return;
        clearTimeout(p.timer);
        this.#pending.delete(corr);
        reject(toError(err));
      });
    });
  }

  broadcast(): void {
    this.#send(this.#broadcastChannel, 'b', '-', '-', '').catch(() => {
      // A lost broadcast only delays a rebalance to the next lease round.
    });
  }

  onBroadcast(fn: () => void): void {
    this.#broadcastFns.push(fn);
    this.#listen(this.#broadcastChannel);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#sweep);
    const closed = new Error('the forwarding transport is closed');
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(closed);
    }
    this.#pending.clear();
    await this.#connecting?.catch(() => {});
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      client.removeAllListeners('end');
      client.removeAllListeners('notification');
      // Sends already handed to the connection finish first (pg runs queries in order).
      await client.end().catch(() => {});
    }
    this.#failOutbox(closed);
  }

  /**
   * Sends one message as one or more notifications: `<kind> <corr> <reply> <i>/<n> <text>`.
   * Resolves once PostgreSQL has taken them (committed).
   */
  #send(channel: string, kind: string, corr: string, reply: string, text: string): Promise<void> {
    const header = (i: number, n: number) => `${kind} ${corr} ${reply} ${i}/${n} `;
    const room = this.#chunk - Buffer.byteLength(header(99_999, 99_999));
    const chunks = chunkUtf8(text, room);
    return new Promise<void>((resolve, reject) => {
      const box = this.#outbox;
      chunks.forEach((c, i) => {
        box.channels.push(channel);
        box.payloads.push(header(i, chunks.length) + c);
      });
      box.settle.push((err) => (err ? reject(err) : resolve()));
      this.#flush();
    });
  }

  /** Sends everything queued in one statement, unless a send is in flight (then after it). */
  #flush(): void {
    const client = this.#client;
    if (!client || this.#sendingOn === client || this.#outbox.settle.length === 0) return;
    const box = this.#outbox;
    this.#outbox = { channels: [], payloads: [], settle: [] };
    this.#sendingOn = client;
    const sql =
      box.payloads.length === 1
        ? 'SELECT pg_notify($1, $2)'
        : 'SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)';
    const params: unknown[] =
      box.payloads.length === 1 ? [box.channels[0], box.payloads[0]] : [box.channels, box.payloads];
    client.query(sql, params).then(
      () => {
        if (this.#sendingOn === client) this.#sendingOn = undefined;
        for (const s of box.settle) s();
        this.#flush();
      },
      (err: unknown) => {
        if (this.#sendingOn === client) this.#sendingOn = undefined;
        for (const s of box.settle) s(toError(err));
        this.#flush();
      },
    );
  }

  #failOutbox(err: Error): void {
    const box = this.#outbox;
    this.#outbox = { channels: [], payloads: [], settle: [] };
    for (const s of box.settle) s(err);
  }

  #onNotification(channel: string, raw: string): void {
    // `<kind> <corr> <reply> <i>/<n> <text>`
    const a = raw.indexOf(' ');
    const b = raw.indexOf(' ', a + 1);
    const c = raw.indexOf(' ', b + 1);
    const d = raw.indexOf(' ', c + 1);
    if (a < 0 || b < 0 || c < 0 || d < 0) return;
    const kind = raw.slice(0, a);
    if (kind === 'b') {
      if (channel === this.#broadcastChannel) for (const fn of this.#broadcastFns) fn();
      return;
    }
    const corr = raw.slice(a + 1, b);
    const reply = raw.slice(b + 1, c);
    const [i, n] = raw
      .slice(c + 1, d)
      .split('/')
      .map(Number) as [number, number];
    let text = raw.slice(d + 1);
    if (!(n > 1)) {
      // One chunk: the common case.
    } else {
      const key = `${channel} ${kind} ${corr}`;
      let partial = this.#partials.get(key);
      if (!partial) {
        partial = { parts: new Array<string>(n), got: 0, at: performance.now() };
        this.#partials.set(key, partial);
      }
      if (partial.parts[i] === undefined) partial.got++;
      partial.parts[i] = text;
      if (partial.got < n) return;
      this.#partials.delete(key);
      text = partial.parts.join('');
    }
    if (kind === 'a') {
      const p = this.#pending.get(corr);
      if (!p) return; // timed out already
      clearTimeout(p.timer);
      this.#pending.delete(corr);
      p.resolve(text);
      return;
    }
    if (kind === 'q') this.#handle(channel, corr, reply, text);
  }

  /** Runs a request's handler and sends its answer. */
  #handle(channel: string, corr: string, reply: string, text: string): void {
    const handler = this.#handlers.get(channel);
    if (!handler) {
      // LISTENed at connect for the node, served a moment later: keep a few until then.
      if (this.#early.length < 1000) this.#early.push({ channel, corr, reply, text });
      return;
    }
    handler(text).then(
      (answer) =>
        this.#send(reply, 'a', corr, '-', answer).catch(() => {
          // The requester times out and the cluster queues the report durably.
        }),
      () => {
        // The handler answers its own errors; nothing to send if it threw anyway.
      },
    );
  }

  #dropStalePartials(): void {
    const old = performance.now() - PARTIAL_TTL_MS;
    for (const [key, p] of this.#partials) if (p.at < old) this.#partials.delete(key);
  }
}
