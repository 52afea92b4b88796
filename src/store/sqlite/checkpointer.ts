/**
 * The SQLite store's checkpoints on a thread of their own. In WAL mode each COMMIT appends pages
 * to the write-ahead log, and once it holds enough of them SQLite copies them back into the
 * database file (a checkpoint) inside the COMMIT that crossed the line, on the engine's event
 * loop. Here a worker thread with its own connection to the file copies them instead, a few
 * milliseconds after commits, while the engine goes on; the engine's connection keeps a much
 * higher automatic checkpoint as a backstop (should the thread fall behind or stop).
 *
 * A checkpoint only copies what is committed: a process killed in the middle of one loses
 * nothing (SQLite finishes or redoes it at the next open).
 *
 * @module
 */

import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { SqliteDriver } from './driver.js';

/** The engine's own automatic checkpoint while the thread runs (pages in the log). */
export const BACKSTOP_PAGES = 16384;

/** Pause after each checkpoint, so that a busy engine gets one every few commits, not each. */
const PAUSE_MS = 10;

/** The worker's code (plain CommonJS: it runs as is, whatever loads the engine's TypeScript). */
const SOURCE = `
const { workerData } = require('node:worker_threads');
const { path, driver, modulePath, signal, pauseMs } = workerData;
const state = new Int32Array(signal);
let db;
try {
  if (driver === 'node:sqlite') {
    // Node 22 warns once per thread that loads it (the engine's thread already held it back).
    const emit = process.emitWarning;
    process.emitWarning = (w, ...rest) =>
      /SQLite is an experimental feature/i.test(String(w && w.message || w)) ? undefined : emit.call(process, w, ...rest);
    const { DatabaseSync } = require('node:sqlite');
    process.emitWarning = emit;
    db = new DatabaseSync(path);
  } else {
    const Database = require(modulePath);
    db = new Database(path, { timeout: 0 });
  }
  db.exec('PRAGMA busy_timeout = 0');
} catch {
  // No thread checkpoints: the engine's automatic checkpoint still runs.
  Atomics.store(state, 2, 1);
  return;
}
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const pause = new Int32Array(new SharedArrayBuffer(4));
let seen = 0;
for (;;) {
  Atomics.wait(state, 0, seen);
  if (Atomics.load(state, 1) === 1) break;
  seen = Atomics.load(state, 0);
  try {
    checkpoint.get();
  } catch {
    // Busy or failing: the next commit brings another try; the engine's backstop runs anyway.
  }
  Atomics.wait(pause, 0, 0, pauseMs);
}
db.close();
`;

/** A thread that checkpoints one SQLite file after commits. */
export class Checkpointer {
  readonly #worker: Worker;
  readonly #state: Int32Array;
  readonly #exited: Promise<void>;

  constructor(path: string, driver: SqliteDriver) {
    const signal = new SharedArrayBuffer(12);
    this.#state = new Int32Array(signal);
    const modulePath =
      driver === 'better-sqlite3' ? createRequire(import.meta.url).resolve('better-sqlite3') : '';
    this.#worker = new Worker(`(() => {${SOURCE}})()`, {
      eval: true,
      workerData: { path, driver, modulePath, signal, pauseMs: PAUSE_MS },
    });
    // It must not keep the process alive, and its failure is no engine failure.
    this.#worker.unref();
    this.#worker.on('error', () => undefined);
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
  }

  /** A commit landed: the thread checkpoints soon. */
  committed(): void {
    Atomics.add(this.#state, 0, 1);
    Atomics.notify(this.#state, 0);
  }

  /** Stops the thread once its checkpoint in progress (if any) ends; resolves when it has. */
  stop(): Promise<void> {
    Atomics.store(this.#state, 1, 1);
    Atomics.add(this.#state, 0, 1);
    Atomics.notify(this.#state, 0);
    return this.#exited;
  }
}
