/**
 * Process and port helpers of the harness: how to run a TypeScript module in a fresh Node,
 * whether a pid still exists, whether a service answers, a free port.
 *
 * @module
 */

import { connect, createServer, type AddressInfo } from 'node:net';

/**
 * How to run a module in a fresh Node: `node` itself with tsx's loader for a `.ts` file (never
 * a wrapper such as the tsx CLI, whose kill would leave the child running).
 */
export function nodeArgs(file: string): string[] {
  if (!file.endsWith('.ts')) return [file];
  let tsx = 'tsx';
  try {
    tsx = import.meta.resolve('tsx');
  } catch {
    // Resolved from the working directory instead.
  }
  return ['--import', tsx, file];
}

/** Whether a pid still exists (`kill(pid, 0)`). */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Whether something listens at a URL's host and port (a service the cluster needs). */
export function listening(url: string, defaultPort: number): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: u.hostname, port: Number(u.port || defaultPort) });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** A free TCP port on 127.0.0.1 (free when asked; good enough for a test). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
