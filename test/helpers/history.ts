import type { HistoryEntry, HistoryOptions, HistoryPage } from '../../src/history.js';
import type { CallbackEngine } from '../../src/index.js';

/** A history moved in time so that its `created` entry is at `createdAt`. */
export function shiftHistory(entries: readonly HistoryEntry[], createdAt: number): HistoryEntry[] {
  const d = createdAt - entries[0]!.at;
  return entries.map((e) => ({
    ...e,
    at: e.at + d,
    ...(e.retryAt !== undefined ? { retryAt: e.retryAt + d } : {}),
  }));
}

/** An engine with `history(tokenOrId, { cursor, limit })` paging the entries `of(id)` gives. */
export type EngineWithHistory = CallbackEngine & {
  history(tokenOrId: string, options?: HistoryOptions): Promise<HistoryPage>;
  /** How many pages were read. */
  readonly pagesRead: number;
};

/**
 * The engine, with a `history()` method the way the journal will provide it: pages of
 * `limit` entries (default 100), the cursor being the next entry's index.
 */
export function withHistory(
  engine: CallbackEngine,
  of: (id: string) => readonly HistoryEntry[] | undefined,
): EngineWithHistory {
  let pagesRead = 0;
  const history = (id: string, options: HistoryOptions = {}): Promise<HistoryPage> => {
    const all = of(id) ?? [];
    const from = Number(options.cursor ?? 0);
    const limit = options.limit ?? 100;
    pagesRead++;
    const entries = all.slice(from, from + limit);
    const next = from + entries.length;
    return Promise.resolve({ id, entries, cursor: next < all.length ? String(next) : undefined });
  };
  // The engine's methods use private fields: call them on the engine itself.
  return new Proxy(engine, {
    get(target, key) {
      if (key === 'history') return history;
      if (key === 'pagesRead') return pagesRead;
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function'
        ? (value as (...a: unknown[]) => unknown).bind(target)
        : value;
    },
  }) as EngineWithHistory;
}
