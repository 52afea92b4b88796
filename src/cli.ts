#!/usr/bin/env node
/**
 * `callback-engine` command line.
 *
 *   callback-engine diagram [--format mermaid|svg|json]
 *   callback-engine demo [--callbacks N] [--concurrency N] [--port N] [--keep] [--memory]
 *   callback-engine demo --crash [--concurrency N]
 *   callback-engine demo --replicas N [--callbacks N] [--concurrency N]
 *
 * @module
 */

import { parseArgs } from 'node:util';
import { toMermaid, toStatelyJson, toSvg } from './lifecycle/diagram.js';

const USAGE = `usage: callback-engine diagram [--format mermaid|svg|json]
       callback-engine demo [--callbacks N] [--concurrency N] [--port N] [--keep] [--memory]
       callback-engine demo --crash [--concurrency N]
       callback-engine demo --replicas N [--callbacks N] [--concurrency N]

  diagram   print the callback lifecycle machine as Mermaid (default), SVG, or JSON for Stately tools
  demo      run the simulation: engine + HTTP service + dashboard, N callbacks reported back over HTTP,
            on a SQLite store in a temp file (--memory: on the memory store)
  demo --crash
            run the engine in a child process on a SQLite file, SIGKILL it under HTTP load, restart it
            on the same file, print the recovery time and check every acknowledged update is there
  demo --replicas N
            run N engine processes on one PostgreSQL schema (CBE_PG, default
            postgres://postgres@127.0.0.1:5432/test) with NATS forwarding (CBE_NATS, default
            nats://127.0.0.1:4222), send ordered reports round-robin across them, SIGKILL one
            mid-run, print the takeover time and check every acknowledged report was applied
            exactly once and in order (default 400 callbacks × 20 reports)
`;

/**
 * Runs the CLI.
 *
 * @param argv - arguments after the program name.
 * @returns the exit code (a promise of it for `demo`); output goes to `out`, errors to `err`.
 */
export function main(
  argv: readonly string[],
  out: (text: string) => void = (t) => process.stdout.write(t),
  err: (text: string) => void = (t) => process.stderr.write(t),
): number | Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        format: { type: 'string', short: 'f', default: 'mermaid' },
        callbacks: { type: 'string' },
        concurrency: { type: 'string' },
        port: { type: 'string', default: '0' },
        keep: { type: 'boolean', default: false },
        memory: { type: 'boolean', default: false },
        crash: { type: 'boolean', default: false },
        replicas: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    err(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const [command] = parsed.positionals;
  if (parsed.values.help || command === undefined) {
    (parsed.values.help ? out : err)(USAGE);
    return parsed.values.help ? 0 : 2;
  }
  if (command === 'demo') return demo(parsed.values, out, err);
  if (command !== 'diagram') {
    err(`unknown command "${command}"\n${USAGE}`);
    return 2;
  }
  const format = parsed.values.format;
  if (format === 'mermaid') out(toMermaid());
  else if (format === 'svg') out(toSvg(undefined, { title: 'callback lifecycle' }));
  else if (format === 'json') out(`${JSON.stringify(toStatelyJson(), null, 2)}\n`);
  else {
    err(`--format must be mermaid, svg or json (got "${format}")\n${USAGE}`);
    return 2;
  }
  return 0;
}

async function demo(
  values: {
    callbacks?: string;
    concurrency?: string;
    port?: string;
    keep?: boolean;
    memory?: boolean;
    crash?: boolean;
    replicas?: string;
  },
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
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
  if (replicas !== undefined) {
    const { runReplicasDemo } = await import('./demo/replicas-demo.js');
    try {
      const bad = await runReplicasDemo({
        replicas,
        callbacks,
        concurrency,
        log: (l) => out(`${l}\n`),
      });
      return bad === 0 ? 0 : 1;
    } catch (e) {
      err(`cluster demo: ${(e as Error).message}\n`);
      return 1;
    }
  }
  if (values.crash) {
    const { runCrashDemo } = await import('./demo/crash.js');
    const lost = await runCrashDemo({
      clients: concurrency,
      log: (l) => out(`${l}\n`),
    });
    return lost === 0 ? 0 : 1;
  }
  // Loaded here so `callback-engine diagram` does not load the HTTP service.
  const { runSimulation } = await import('./demo/simulation.js');
  const keep = values.keep ?? false;
  const summary = await runSimulation({
    callbacks,
    concurrency,
    port,
    keep,
    store: values.memory ? 'memory' : 'sqlite',
    log: (l) => out(`${l}\n`),
  });
  if (keep) {
    await new Promise<void>((resolve) => process.once('SIGINT', resolve));
    await summary.close();
  }
  return summary.lostUpdates === 0 && summary.httpErrors === 0 ? 0 : 1;
}

const invoked = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (invoked || process.argv[1]?.endsWith('/callback-engine')) {
  void Promise.resolve(main(process.argv.slice(2))).then((code) => (process.exitCode = code));
}
