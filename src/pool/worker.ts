/**
 * The piscina worker entry: every pool thread loads this module and runs one
 * worker step per task (spec 6).
 *
 * Step modules are imported once per thread and cached. A TypeScript step
 * module (`.ts`, `.mts`, `.cts`, `.tsx`) is imported natively when the runtime
 * can (a Node with type stripping, and a module whose imports name real files),
 * else through `tsx`'s scoped ESM loader, which therefore must be installed
 * where such TypeScript steps are used. Ship step modules as JavaScript to run
 * without `tsx`.
 *
 * @module
 */

import { toError, toStepError } from '../thrown.js';
import type { StepOutput } from '../types.js';
import type { WorkerStepInput } from './worker-step.js';

/** One task the pool posts to a thread: which step to run, and its (structured-cloned) input. */
export interface WorkerTask {
  /** `file:` URL of the step module. */
  readonly module: string;
  /** The export to call. */
  readonly exportName: string;
  /** What the step function receives. */
  readonly input: WorkerStepInput;
}

type StepModule = Readonly<Record<string, unknown>>;

/** The part of `tsx/esm/api` this entry uses. */
interface TsxEsmApi {
  register(options: { namespace: string }): {
    import(specifier: string, parentURL: string): Promise<unknown>;
  };
}

const TYPESCRIPT_MODULE = /\.(?:[cm]?ts|tsx)$/;
// A variable specifier: tsx is optional at run time and must not be resolved at build time.
const TSX_ESM_API = 'tsx/esm/api';

const modules = new Map<string, Promise<StepModule>>();
let tsxImport: Promise<(href: string) => Promise<StepModule>> | undefined;

/**
 * Runs one worker step: imports its module (cached per thread), calls the named export with the
 * input and returns what it returns, which piscina structured-clones back to the engine.
 *
 * @param task - the step module, the export name and the step input.
 * @returns the step's output: an object merged into the callback's data, or nothing.
 * @throws TypeError when the module has no function under `exportName` or the step returns a value
 *   structured clone cannot copy; what the step throws, as a bounded `Error` (`toStepError`).
 */
export default async function runWorkerTask(task: WorkerTask): Promise<StepOutput> {
  const mod = await loadModule(task.module);
  const fn = mod[task.exportName];
  if (typeof fn !== 'function') {
    throw new TypeError(
      `worker step module ${task.module} has no function export "${task.exportName}"`,
    );
  }
  let output: StepOutput;
  try {
    output = (await (fn as (input: WorkerStepInput) => unknown)(task.input)) as StepOutput;
  } catch (err) {
    // Sent back as a bounded plain Error: a 5 MB message is not copied across threads, and a
    // value structured clone cannot copy (a Proxy, a function) still arrives as a message.
    throw toStepError(err);
  }
  if (output !== undefined && output !== null) {
    // Checked here: if piscina's postMessage failed instead, the thread would die with an
    // unreadable error and have to be replaced.
    try {
      structuredClone(output);
    } catch (err) {
      throw new TypeError(
        `worker step "${task.exportName}" of ${task.module} returned a value that cannot be sent back: ${toError(err).message}`,
      );
    }
  }
  return output;
}

/**
 * Does nothing. The pool runs it to make piscina start a thread when queued work is left without
 * one (piscina replaces a thread lost to an abort or a crash only up to `minThreads`).
 */
export function ping(): void {}

function loadModule(href: string): Promise<StepModule> {
  let mod = modules.get(href);
  if (!mod) {
    mod = importModule(href);
    // A failed import is not cached here, so a fixed module can be retried without a restart.
    mod.catch(() => modules.delete(href));
    modules.set(href, mod);
  }
  return mod;
}

/**
 * Why a native import of a TypeScript module fails where `tsx` may succeed: a Node without type
 * stripping does not know the extension; a Node with it (22.18+, 23.6+, 24) strips types but
 * resolves imports as written, so a module that imports its siblings as `./x.js` (TypeScript's
 * NodeNext style) finds nothing, and it refuses syntax that needs transforming (an `enum`).
 */
const NATIVE_TS_FAILURES = new Set([
  'ERR_UNKNOWN_FILE_EXTENSION',
  'ERR_MODULE_NOT_FOUND',
  'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX',
]);

async function importModule(href: string): Promise<StepModule> {
  if (!TYPESCRIPT_MODULE.test(new URL(href).pathname)) return (await import(href)) as StepModule;
  let native: unknown;
  try {
    return (await import(href)) as StepModule;
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code !== 'string' || !NATIVE_TS_FAILURES.has(code)) throw err;
    native = err;
  }
  if (!tsxImport) {
    tsxImport = loadTsx(href);
    tsxImport.catch(() => (tsxImport = undefined));
  }
  let load: (href: string) => Promise<StepModule>;
  try {
    load = await tsxImport;
  } catch (err) {
    // No tsx: a Node that knows the extension gave the better reason (the missing import, the
    // syntax it cannot strip).
    if ((native as { code?: unknown }).code === 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
    throw native;
  }
  return load(href);
}

async function loadTsx(href: string): Promise<(href: string) => Promise<StepModule>> {
  let api: TsxEsmApi;
  try {
    api = (await import(TSX_ESM_API)) as TsxEsmApi;
  } catch (err) {
    throw new Error(
      `worker step module ${href} is TypeScript and this Node cannot import it natively: install "tsx" or ship the step module as JavaScript`,
      { cause: err },
    );
  }
  // A namespaced registration only affects imports made through it, not the rest of the thread.
  const scoped = api.register({ namespace: 'callback-engine' });
  return async (specifier) => (await scoped.import(specifier, import.meta.url)) as StepModule;
}
