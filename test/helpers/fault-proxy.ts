import {
  createServer,
  request,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the proxy does with one request:
 * - `pass`: forwards it and relays the answer;
 * - `503`: answers 503 with `Retry-After: <retryAfter>` itself (the service never sees it);
 * - `drop-before`: destroys the client's connection before forwarding (never applied);
 * - `drop-after`: forwards it, waits for the service's whole answer, then destroys the
 *   client's connection instead of relaying it (applied, but the client never hears so).
 */
export type Fault = 'pass' | '503' | 'drop-before' | 'drop-after';

/** A proxy in front of a service that fails requests by plan. */
export interface FaultProxy {
  readonly url: string;
  /** Requests seen, by what was done to them. */
  readonly counts: Record<Fault, number>;
  /** Every request seen, in arrival order: its path and what was done. */
  readonly log: { path: string; fault: Fault }[];
  close(): Promise<void>;
}

/**
 * Starts a proxy on 127.0.0.1 in front of `upstream`. `plan(n, path)` picks the fault for the
 * n-th request (0-based, in arrival order).
 */
export async function startFaultProxy(
  upstream: string,
  plan: (n: number, path: string) => Fault,
  retryAfter = '1',
): Promise<FaultProxy> {
  const target = new URL(upstream);
  const counts: Record<Fault, number> = { pass: 0, '503': 0, 'drop-before': 0, 'drop-after': 0 };
  const log: { path: string; fault: Fault }[] = [];
  let n = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const path = req.url ?? '/';
    const fault = plan(n++, path);
    counts[fault]++;
    log.push({ path, fault });
    if (fault === 'drop-before') {
      req.socket.destroy();
      return;
    }
    if (fault === '503') {
      const text = JSON.stringify({ code: 'CBE_ERR_STORE_UNAVAILABLE', message: 'injected' });
      res.writeHead(503, {
        'content-type': 'application/json',
        'retry-after': retryAfter,
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
      return;
    }
    const headers = { ...req.headers, host: target.host };
    const up = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path,
        headers,
      },
      (answer) => {
        const parts: Buffer[] = [];
        answer.on('data', (c: Buffer) => parts.push(c));
        answer.on('end', () => {
          if (fault === 'drop-after') {
            req.socket.destroy();
            return;
          }
          const out = Buffer.concat(parts);
          const h = { ...answer.headers, 'content-length': String(out.length) };
          delete h['transfer-encoding'];
          res.writeHead(answer.statusCode ?? 502, h);
          res.end(out);
        });
      },
    );
    up.on('error', () => req.socket.destroy());
    up.end(body);
  };
  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    log,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
