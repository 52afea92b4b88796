/**
 * Replica processes of a cluster on PostgreSQL, for the cluster tests, the cluster bench and
 * the cluster demo (`npm start -- --replicas N`): spawning replicas (replica-server.ts),
 * killing, stopping, thawing and terminating them. The load that drives them is
 * `ClusterLoad` (cluster-load.ts).
 *
 * @module
 */

import { createInterface } from 'node:readline';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nodeArgs, pidExists } from './spawn.js';

/** The replica server module, run in each child. */
export const REPLICA_ENTRY = fileURLToPath(new URL('./replica-server.ts', import.meta.url));

/** Options of {@link spawnReplica}. */
export interface SpawnReplicaOptions {
  /** The cluster's schema. */
  schema: string;
  /** The replica's node name. */
  node: string;
  /** PostgreSQL connection string. @default the replica's default */
  pg?: string;
  /** NATS URL, or `'none'`. @default the replica's default */
  nats?: string;
  /** Lease TTL, ms. */
  leaseTtl?: number;
  /** Lease renewal interval, ms. */
  renew?: number;
  /** Forward timeout, ms. */
  forwardTimeout?: number;
  /** How long to wait for `READY`, ms. @default 30000 */
  readyTimeout?: number;
  /** The module to run. @default {@link REPLICA_ENTRY} */
  entry?: string;
}

/** A running replica process. */
export interface Replica {
  readonly node: string;
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Sends a signal to the process (nothing if it is gone). */
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code (`null` when a signal ended it) once the process is gone. */
  readonly exited: Promise<number | null>;
  /** Whether the process has exited. */
  isGone(): boolean;
  /** Everything it wrote to stderr so far (for diagnostics). */
  stderr(): string;
  /** From spawn to `READY`, ms. */
  readonly spawnMs: number;
}

/** Every replica spawned by this process and not yet gone, so a test can clean up. */
const spawned = new Set<Replica>();

/**
 * Spawns a replica: `node` itself (never a wrapper such as the tsx CLI, whose kill would leave
 * the engine running), and waits for its `READY` line.
 *
 * @throws if the process exits or stays silent past `readyTimeout` before `READY` (it is
 *   SIGKILLed then); the message carries its stderr.
 */
export async function spawnReplica(options: SpawnReplicaOptions): Promise<Replica> {
  const args = ['--schema', options.schema, '--node', options.node];
  if (options.pg !== undefined) args.push('--pg', options.pg);
  if (options.nats !== undefined) args.push('--nats', options.nats);
  if (options.leaseTtl !== undefined) args.push('--lease-ttl', String(options.leaseTtl));
  if (options.renew !== undefined) args.push('--renew', String(options.renew));
  if (options.forwardTimeout !== undefined)
    args.push('--forward-timeout', String(options.forwardTimeout));
  const started = performance.now();
  const child = spawn(process.execPath, [...nodeArgs(options.entry ?? REPLICA_ENTRY), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn replica ${options.node}`);
  let stderr = '';
  let gone = false;
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      gone = true;
      resolve(code);
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `replica ${options.node} (pid ${pid}) not READY after ${options.readyTimeout ?? 30_000} ms\n${stderr}`,
        ),
      );
    }, options.readyTimeout ?? 30_000);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(
        new Error(
          `replica ${options.node} (pid ${pid}) exited (${child.signalCode ?? code}) before READY\n${stderr}`,
        ),
      );
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^READY (\d+) (\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  const replica: Replica = {
    node: options.node,
    port,
    pid,
    child,
    kill(signal) {
      if (!gone) {
        try {
          process.kill(pid, signal);
        } catch {
          // Already gone.
        }
      }
    },
    exited,
    isGone: () => gone,
    stderr: () => stderr,
    spawnMs: performance.now() - started,
  };
  spawned.add(replica);
  void exited.then(() => spawned.delete(replica));
  return replica;
}

/**
 * SIGKILLs a replica and resolves once it is gone.
 *
 * @returns when the signal was sent (`performance.now()`).
 * @throws if its pid still exists after the exit event.
 */
export async function sigkill(r: Replica): Promise<number> {
  const at = performance.now();
  r.kill('SIGKILL');
  await r.exited;
  if (pidExists(r.pid))
    throw new Error(`replica ${r.node} (pid ${r.pid}) still exists after SIGKILL`);
  return at;
}

/** Freezes a replica (SIGSTOP): the process lives on but runs nothing: a zombie owner. @returns when. */
export function sigstop(r: Replica): number {
  const at = performance.now();
  r.kill('SIGSTOP');
  return at;
}

/** Thaws a replica stopped by {@link sigstop}. @returns when. */
export function sigcont(r: Replica): number {
  const at = performance.now();
  r.kill('SIGCONT');
  return at;
}

/**
 * SIGTERMs a replica (graceful close: hands its shards over) and waits for it to exit.
 *
 * @param timeoutMs - SIGKILL after this long. @default 15000
 * @returns its exit code (0 after a clean close), and when the signal was sent.
 * @throws if it had to be SIGKILLed.
 */
export async function terminate(
  r: Replica,
  timeoutMs = 15_000,
): Promise<{ code: number | null; at: number }> {
  const at = performance.now();
  r.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>(
    (resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)),
  );
  const code = await Promise.race([r.exited, late]);
  clearTimeout(timer);
  if (code === 'late') {
    r.kill('SIGKILL');
    await r.exited;
    throw new Error(
      `replica ${r.node} (pid ${r.pid}) did not exit within ${timeoutMs} ms of SIGTERM\n${r.stderr()}`,
    );
  }
  return { code, at };
}

/** SIGKILLs every replica this process spawned that is still running (test cleanup). */
export async function killAllReplicas(): Promise<void> {
  const all = [...spawned];
  for (const r of all) r.kill('SIGKILL');
  await Promise.all(all.map((r) => r.exited));
}
