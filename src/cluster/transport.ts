/**
 * Forwarding transport between replicas: NATS request-reply (chosen over
 * PostgreSQL LISTEN/NOTIFY by measurement, see bench/RESULTS.md). Each replica
 * serves one subject named after it; a report for a callback it owns is sent
 * there and the owner's answer comes back on the reply inbox. A broadcast
 * subject tells every replica that shard ownership changed.
 *
 * @module
 */

import type { NatsConnection, Subscription } from 'nats';

/** Answers a forwarded request (runs at the owner). */
export type RequestHandler = (payload: string) => Promise<string>;

/** The forwarding transport a cluster uses. */
export interface Transport {
  /** Serves requests addressed to `node`. */
  serve(node: string, handler: RequestHandler): void;
  /**
   * Sends a request to `node` and resolves its reply.
   * @throws if nobody answers within `timeoutMs` (or nobody serves `node`).
   */
  request(node: string, payload: string, timeoutMs: number): Promise<string>;
  /** Tells every replica that ownership changed. */
  broadcast(): void;
  /** Calls `fn` when another replica broadcasts. */
  onBroadcast(fn: () => void): void;
  close(): Promise<void>;
}

/** A node name as one NATS subject token (names may hold dots or wildcards). */
const token = (node: string): string => Buffer.from(node, 'utf8').toString('hex');

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** NATS request-reply. */
export class NatsTransport implements Transport {
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #subs: Subscription[] = [];

  private constructor(nc: NatsConnection, prefix: string) {
    this.#nc = nc;
    this.#prefix = prefix;
  }

  /**
   * Connects to NATS.
   * @param servers - NATS server URLs.
   * @param prefix - subject prefix of this cluster.
   */
  static async connect(
    servers: string | string[],
    prefix: string,
    name: string,
  ): Promise<NatsTransport> {
    const { connect } = await import('nats');
    const nc = await connect({
      servers,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      timeout: 2000,
      // No stack captured per request for a timeout that seldom comes (the cluster catches a
      // failed forward and falls back): `new Error()` in each request was an eighth of a
      // forwarded report's CPU.
      noAsyncTraces: true,
    });
    return new NatsTransport(nc, prefix);
  }

  serve(node: string, handler: RequestHandler): void {
    const sub = this.#nc.subscribe(`${this.#prefix}.node.${token(node)}`, {
      callback: (err, msg) => {
        if (err) return;
        handler(decoder.decode(msg.data)).then(
          (reply) => msg.respond(encoder.encode(reply)),
          () => {
            // The handler answers its own errors; nothing to send if it threw anyway.
          },
        );
      },
    });
    this.#subs.push(sub);
  }

  async request(node: string, payload: string, timeoutMs: number): Promise<string> {
    const msg = await this.#nc.request(
      `${this.#prefix}.node.${token(node)}`,
      encoder.encode(payload),
      {
        timeout: timeoutMs,
      },
    );
    return decoder.decode(msg.data);
  }

  broadcast(): void {
    this.#nc.publish(`${this.#prefix}.rebalance`);
  }

  onBroadcast(fn: () => void): void {
    this.#subs.push(this.#nc.subscribe(`${this.#prefix}.rebalance`, { callback: () => fn() }));
  }

  async close(): Promise<void> {
    for (const s of this.#subs) s.unsubscribe();
    await this.#nc.drain().catch(() => this.#nc.close());
  }
}
