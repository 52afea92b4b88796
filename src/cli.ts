#!/usr/bin/env node
/**
 * `callback-engine` command line.
 *
 *   callback-engine diagram [--format mermaid|svg|json]
 *
 * @module
 */

import { parseArgs } from 'node:util';
import { toMermaid, toStatelyJson, toSvg } from './lifecycle/diagram.js';

const USAGE = `usage: callback-engine diagram [--format mermaid|svg|json]

  diagram   print the callback lifecycle machine as Mermaid (default), SVG, or JSON for Stately tools
`;

/**
 * Runs the CLI.
 *
 * @param argv - arguments after the program name.
 * @returns the exit code; output goes to `out`, errors to `err`.
 */
export function main(
  argv: readonly string[],
  out: (text: string) => void = (t) => process.stdout.write(t),
  err: (text: string) => void = (t) => process.stderr.write(t),
): number {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        format: { type: 'string', short: 'f', default: 'mermaid' },
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

const invoked = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (invoked || process.argv[1]?.endsWith('/callback-engine'))
  process.exitCode = main(process.argv.slice(2));
