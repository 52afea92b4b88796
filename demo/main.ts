/**
 * The demo, run by `npm start` in a clone of the repository (not part of the package):
 *
 *   npm start [-- --callbacks N] [--concurrency N] [--port N] [--keep] [--memory] [--no-compare]
 *   npm start -- --crash [--concurrency N]
 *   npm start -- --replicas N [--callbacks N] [--concurrency N]
 *
 * @module
 */

import { parseArgs } from 'node:util';

const USAGE = `usage: npm start [-- --callbacks N] [--concurrency N] [--port N] [--keep] [--memory]
                 [--no-compare]
       npm start -- --crash [--concurrency N]
       npm start -- --replicas N [--callbacks N] [--concurrency N]

  (no option)   the simulation: engine + HTTP service + dashboard, N callbacks (default 20000)
                reported back over HTTP by simulated outside services, on a SQLite store in a
                temp file (--memory: on the memory store; --keep: leave the dashboard up);
                then the same load on the memory store for a few seconds, and a table comparing
                the two (--no-compare: skip it; --memory skips it too)
  --crash       run the engine in a child process on a SQLite file, SIGKILL it under HTTP load,
                restart it on the same file, print the recovery time and check every
                acknowledged update is there
  --replicas N  run N engine processes on one PostgreSQL schema (PG_URL, default
                postgres://postgres@127.0.0.1:5432/test) forwarding over NATS where it answers
                (CBE_NATS, default nats://127.0.0.1:4222) or else over PostgreSQL, send ordered
                reports round-robin across them, SIGKILL one mid-run, print the takeover time
                and check every acknowledged report was applied exactly once and in order
                (default 400 callbacks × 20 reports)
`;

/**
 * Runs the demo.
 *
 * @param argv - the arguments after `npm start --`.
 * @returns the exit code: 0 when nothing acknowledged was lost, 1 otherwise, 2 for bad usage.
 */
export async function main(
  argv: readonly string[],
  out: (text: string) => void = (t) => process.stdout.write(t),
  err: (text: string) => void = (t) => process.stderr.write(t),
): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        callbacks: { type: 'string' },
        concurrency: { type: 'string' },
        port: { type: 'string', default: '0' },
        keep: { type: 'boolean', default: false },
        memory: { type: 'boolean', default: false },
        'no-compare': { type: 'boolean', default: false },
        crash: { type: 'boolean', default: false },
        replicas: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (e) {
    err(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const int = (name: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) {
      throw new Error(`--${name} must be an integer of at least ${min} (got ${JSON.stringify(v)})`);
    }
    return n;
  };
  let callbacks: number, concurrency: number, port: number, replicas: number | undefined;
  const cluster = values.replicas !== undefined;
  try {
    callbacks = int('callbacks', values.callbacks ?? (cluster ? '400' : '20000'), 1);
    concurrency = int(
      'concurrency',
      values.concurrency ?? (values.crash || cluster ? '32' : '128'),
      1,
    );
    port = int('port', values.port, 0);
    replicas = cluster ? int('replicas', values.replicas, 2) : undefined;
  } catch (e) {
    err(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const log = (line: string) => out(`${line}\n`);
  // Each demo is loaded only when asked for: the simulation needs neither PostgreSQL nor a child.
  if (replicas !== undefined) {
    const { runReplicasDemo } = await import('./replicas.js');
    try {
      const bad = await runReplicasDemo({ replicas, callbacks, concurrency, log });
      return bad === 0 ? 0 : 1;
    } catch (e) {
      err(`cluster demo: ${(e as Error).message}\n`);
      return 1;
    }
  }
  if (values.crash) {
    const { runCrashDemo } = await import('./crash.js');
    const lost = await runCrashDemo({ clients: concurrency, log });
    return lost === 0 ? 0 : 1;
  }
  const { runSimulation } = await import('./simulation.js');
  const summary = await runSimulation({
    callbacks,
    concurrency,
    port,
    keep: values.keep,
    store: values.memory ? 'memory' : 'sqlite',
    log,
  });
  if (!values.memory && !values['no-compare']) {
    const { compareWithMemory } = await import('./compare.js');
    await compareWithMemory(summary, { log });
  }
  if (values.keep) {
    log(`\ndashboard stays up at ${summary.dashboardUrl} (Ctrl-C to stop)`);
    await new Promise<void>((resolve) => process.once('SIGINT', resolve));
    await summary.close();
  }
  return summary.lostUpdates === 0 && summary.httpErrors === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
