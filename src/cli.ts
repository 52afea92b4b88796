#!/usr/bin/env node
/**
 * `callback-engine` command line.
 *
 *   callback-engine diagram [--format mermaid|svg|json]
 *   callback-engine ls <db> [--status S] [--anchor A] [--limit N] [--cursor C] [--json]
 *   callback-engine get <db> <id or short id> [--json | --format table|json|text|svg|mermaid]
 *   callback-engine stats <db> [--json]
 *   callback-engine --version | --help
 *
 * The demo is not part of the package: `npm start` runs it in a clone of the repository.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { inspectSqlite, InspectError, table, type StoreInspector } from './cli/inspect.js';
import { GET_FORMATS, showCallback, type GetFormat } from './cli/show.js';
import { toMermaid, toStatelyJson, toSvg } from './diagrams/diagram.js';
import { ACTIVE_STATUSES, TERMINAL_STATUSES } from './lifecycle/statuses.js';

const USAGE = `usage: callback-engine diagram [--format mermaid|svg|json]
       callback-engine ls <db> [--status S] [--anchor A] [--limit N] [--cursor C] [--json]
       callback-engine get <db> <id or short id> [--json | --format table|json|text|svg|mermaid]
       callback-engine stats <db> [--json]
       callback-engine --version | --help

  diagram   print the callback lifecycle machine as Mermaid (default), SVG, or JSON: a machine config
            that XState's createMachine() builds and Stately Studio imports (paste it as createMachine(...))
  ls        list the callbacks of a SQLite store file (read-only), oldest first, 50 a page, each by
            its short id: the fewest characters of its id (8 or more) no other callback shares
  get       one callback of a SQLite store file by id or short id: status, data, step error, times, children;
            from its history: --format text (its timeline, one line per entry), svg (its path on the
            lifecycle over its timeline), mermaid (its path), to paste into a ticket
  stats     counts by status and anchor of a SQLite store file
            (ls/get/stats print a table, or JSON with --json; they read a file a running engine
            holds, beside it: what it has committed)

The demo is not part of the package: run \`npm start\` in a clone of the repository.
`;

/** What `callback-engine demo` answers: the demo moved out of the package. */
const NO_DEMO = `callback-engine has no demo command: the demo is not part of the installed package.
In a clone of the repository, run \`npm start\` (options after \`--\`: \`npm start -- --help\`).
`;

/** The package version, from package.json (two levels up from src/cli.ts and dist/cli.js). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** What the CLI reaches outside its arguments (tests replace it). */
export interface CliIo {
  /** Opens a store file read-only. @default {@link inspectSqlite} */
  readonly inspect?: (path: string) => StoreInspector | Promise<StoreInspector>;
}

/**
 * Runs the CLI.
 *
 * @param argv - arguments after the program name.
 * @param io - how store files are opened.
 * @returns the exit code (a promise of it for `ls`, `get` and `stats`); output goes to `out`,
 *   errors to `err`.
 */
export function main(
  argv: readonly string[],
  out: (text: string) => void = (t) => process.stdout.write(t),
  err: (text: string) => void = (t) => process.stderr.write(t),
  io: CliIo = {},
): number | Promise<number> {
  // The demo moved out of the package; its options would not parse here.
  if (argv[0] === 'demo') {
    err(NO_DEMO);
    return 2;
  }
  let parsed;
  // A callbackId is base64url and may start with "-": keep such an argument (a whole id, or a
  // short id of 8 or more characters that does not start like a long option) positional.
  const ID_LIKE = /^(?:-[A-Za-z0-9_-]{21}|-(?!-)[A-Za-z0-9_-]{7,20})$/;
  const HIDE = '\u0000';
  try {
    parsed = parseArgs({
      args: argv.map((a) => (ID_LIKE.test(a) ? `${HIDE}${a}` : a)),
      allowPositionals: true,
      options: {
        format: { type: 'string', short: 'f' },
        status: { type: 'string' },
        anchor: { type: 'string' },
        limit: { type: 'string', default: '50' },
        cursor: { type: 'string' },
        json: { type: 'boolean', default: false },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    err(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  parsed.positionals = parsed.positionals.map((a) => (a.startsWith(HIDE) ? a.slice(1) : a));
  const [command] = parsed.positionals;
  if (parsed.values.version) {
    out(`${version()}\n`);
    return 0;
  }
  if (parsed.values.help || command === undefined) {
    (parsed.values.help ? out : err)(USAGE);
    return parsed.values.help ? 0 : 2;
  }
  if (command === 'ls' || command === 'get' || command === 'stats')
    return inspect(command, parsed.positionals.slice(1), parsed.values, out, err, io);
  if (command !== 'diagram') {
    err(`unknown command "${command}"\n${USAGE}`);
    return 2;
  }
  const format = parsed.values.format ?? 'mermaid';
  if (format === 'mermaid') out(toMermaid());
  else if (format === 'svg') out(toSvg(undefined, { title: 'callback lifecycle' }));
  else if (format === 'json') out(`${JSON.stringify(toStatelyJson(), null, 2)}\n`);
  else {
    err(`--format must be mermaid, svg or json (got "${format}")\n${USAGE}`);
    return 2;
  }
  return 0;
}

/** `ls`, `get`, `stats` on a SQLite store file. */
async function inspect(
  command: 'ls' | 'get' | 'stats',
  args: readonly string[],
  values: {
    status?: string;
    anchor?: string;
    limit?: string;
    cursor?: string;
    json?: boolean;
    format?: string;
  },
  out: (text: string) => void,
  err: (text: string) => void,
  io: CliIo,
): Promise<number> {
  const [file, id] = args;
  const want = command === 'get' ? 2 : 1;
  if (file === undefined || args.length !== want) {
    err(`${command} takes ${command === 'get' ? '<db> <id>' : '<db>'}\n${USAGE}`);
    return 2;
  }
  const limit = Number(values.limit);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) {
    err(`--limit must be an integer from 1 to 10000 (got ${JSON.stringify(values.limit)})\n`);
    return 2;
  }
  const STATUSES = [...ACTIVE_STATUSES, ...TERMINAL_STATUSES] as readonly string[];
  if (values.status !== undefined && !STATUSES.includes(values.status)) {
    err(`--status must be one of ${STATUSES.join(', ')} (got ${JSON.stringify(values.status)})\n`);
    return 2;
  }
  let format: GetFormat | undefined;
  if (values.format !== undefined) {
    if (command !== 'get' || !(GET_FORMATS as readonly string[]).includes(values.format)) {
      err(
        command === 'get'
          ? `--format must be one of ${GET_FORMATS.join(', ')} (got ${JSON.stringify(values.format)})\n`
          : `--format is for diagram and get; ${command} takes --json\n`,
      );
      return 2;
    }
    format = values.format as GetFormat;
  }
  let store: StoreInspector | undefined;
  try {
    store = await (io.inspect ?? inspectSqlite)(file);
    const json = (v: unknown) => out(`${JSON.stringify(v, null, 2)}\n`);
    if (command === 'stats') {
      const s = store.stats();
      if (values.json) return (json(s), 0);
      out(
        `${s.file}: ${s.callbacks} callbacks, ${s.bytes} bytes, schema ${s.schemaVersion}, next due ${s.nextDueAt ?? '-'}\n\n`,
      );
      const statuses = Object.keys(s.byStatus).sort();
      out(
        table(
          ['anchor', ...statuses, 'total'],
          [
            ...Object.entries(s.byAnchor)
              .sort(([a], [b]) => a.localeCompare(b))
              .map(([anchor, by]) => [
                anchor,
                ...statuses.map((st) => String(by[st] ?? 0)),
                String(Object.values(by).reduce((a, b) => a + b, 0)),
              ]),
            ['(all)', ...statuses.map((st) => String(s.byStatus[st])), String(s.callbacks)],
          ],
        ),
      );
      return 0;
    }
    if (command === 'get') {
      let cb = store.get(id!);
      // A short id: the start of exactly one callback's id.
      if (!cb && /^[A-Za-z0-9_-]{4,21}$/.test(id!) && store.startingWith) {
        const ids = store.startingWith(id!, 6);
        if (ids.length > 1) {
          err(
            `${JSON.stringify(id)} starts ${ids.length > 5 ? 'more than 5' : ids.length} callback ids in ${file} (${ids.slice(0, 5).join(', ')}): give more of it\n`,
          );
          return 1;
        }
        if (ids.length === 1) cb = store.get(ids[0]!);
      }
      if (!cb) {
        err(`no callback with id ${JSON.stringify(id)} in ${file}\n`);
        return 1;
      }
      const shown = showCallback(
        cb,
        store.history?.(cb.id),
        format ?? (values.json ? 'json' : 'table'),
        file,
      );
      if ('err' in shown) {
        err(shown.err);
        return shown.code;
      }
      out(shown.out);
      return 0;
    }
    const page = store.list({
      limit,
      ...(values.status !== undefined ? { status: values.status } : {}),
      ...(values.anchor !== undefined ? { anchor: values.anchor } : {}),
      ...(values.cursor !== undefined ? { cursor: values.cursor } : {}),
    });
    if (values.json) return (json(page), 0);
    out(
      table(
        ['id', 'anchor', 'status', 'created', 'deadline', 'tags', 'data'],
        page.items.map((c) => {
          const data = JSON.stringify(c.data);
          return [
            c.shortId,
            c.anchor,
            c.status,
            c.createdAt,
            // A terminal callback has no deadline any more.
            (TERMINAL_STATUSES as readonly string[]).includes(c.status)
              ? '-'
              : (c.deadlineAt ?? '-'),
            c.tags.join(',') || '-',
            data.length > 60 ? `${data.slice(0, 59)}…` : data,
          ];
        }),
      ),
    );
    out(
      `(${page.items.length} callback${page.items.length === 1 ? '' : 's'}${page.cursor === undefined ? '' : `; next page: --cursor ${page.cursor}`})\n`,
    );
    return 0;
  } catch (e) {
    if (!(e instanceof InspectError)) throw e;
    err(`${e.message}\n`);
    return 1;
  } finally {
    store?.close();
  }
}

const invoked = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (invoked || process.argv[1]?.endsWith('/callback-engine')) {
  void Promise.resolve(main(process.argv.slice(2))).then((code) => (process.exitCode = code));
}
