/**
 * What the benchmarks of replica processes share (bench/cluster.bench.ts, workload 3, and
 * bench/capacity.bench.ts): each replica's `GET /stats`, the wait until the shards are balanced,
 * and the shuffle of the tokens before a round-robin.
 */
import type { ClusterLoad } from '../test/harness/cluster-load.js';
import type { Replica } from '../test/harness/replicas.js';

/** What a replica's `GET /stats` answers, as far as the benchmarks read it. */
export interface ReplicaStats {
  node: string;
  stats: {
    dispatched: number;
    commits: number;
    rowsWritten: number;
    cluster: { shards: number; forwarded: number; served: number; queued: number };
  };
}

/** Every replica's `GET /stats`, in the order of `replicas`. */
export function replicaStats(
  load: ClusterLoad,
  replicas: readonly Replica[],
): Promise<ReplicaStats[]> {
  return Promise.all(
    replicas.map(async (r) => {
      const reply = await load.send(r.port, 'GET', '/stats');
      if (typeof reply !== 'object' || reply.status !== 200)
        throw new Error(`GET /stats of ${r.node}: ${JSON.stringify(reply)}`);
      return reply.body as unknown as ReplicaStats;
    }),
  );
}

/**
 * Resolves each replica's shards once they are balanced: every one of `shards` held, and each
 * replica holding at least what is left to the last when the others take `ceil(shards / n)`
 * (64 = 22 + 22 + 20 with 3).
 * @throws if they are not within `timeoutMs`.
 */
export async function balancedShards(
  load: ClusterLoad,
  replicas: readonly Replica[],
  shards: number,
  timeoutMs = 20_000,
): Promise<number[]> {
  const n = replicas.length;
  const least = shards - (n - 1) * Math.ceil(shards / n);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const held = (await replicaStats(load, replicas)).map((s) => s.stats.cluster.shards);
    if (held.reduce((x, y) => x + y, 0) === shards && Math.min(...held) >= least) return held;
    if (performance.now() > deadline)
      throw new Error(`${n} replicas did not balance: shards ${held.join(', ')}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Shuffles tokens in place with a fixed seed, so that a round-robin over the replicas does not
 * line up with the order they were created in (with 2 replicas, nearly every report could go to
 * the replica that does not own its callback, or nearly none).
 */
export function shuffleTokens(tokens: string[], seed = 12345): void {
  for (let i = tokens.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const j = seed % (i + 1);
    [tokens[i], tokens[j]] = [tokens[j]!, tokens[i]!];
  }
}
