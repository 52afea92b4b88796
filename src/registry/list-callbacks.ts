/**
 * Paging through callbacks for {@link CallbackEngine.list}: filters, creation
 * order, opaque cursors.
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { StoredCallback, StoreListQuery } from '../store/store.js';
import type { ListedCallback, ListPage } from '../types.js';
import type { CallbackRecord } from './record.js';

/** Filters and paging of `engine.list()`. */
export interface ListOptions {
  status?: CallbackStatus | readonly CallbackStatus[];
  anchor?: string;
  /** Callbacks carrying all of these tags. */
  tags?: readonly string[];
  /** The `cursor` of the previous page. */
  cursor?: string;
  /** Page size, 1-1000. @default 100 */
  limit?: number;
}

/**
 * One page of the records matching `options`, in creation order.
 * @throws {@link InvalidArgumentError} for a bad `limit` or `cursor`.
 */
export function listCallbacks(
  sources: readonly Iterable<CallbackRecord>[],
  options: ListOptions,
): ListPage {
  const { limit, after, statuses, tags } = listParams(options);
  const matches: CallbackRecord[] = [];
  for (const source of sources) {
    for (const r of source) {
      if (r.seq <= after) continue;
      if (statuses && !statuses.has(r.status)) continue;
      if (options.anchor !== undefined && r.anchor !== options.anchor) continue;
      if (!tags.every((t) => r.tags.includes(t))) continue;
      matches.push(r);
    }
  }
  matches.sort((a, b) => a.seq - b.seq);
  return toPage(matches, limit);
}

/**
 * The paging of a durable store's rows, as a generator: it yields each query and is sent the
 * rows, so the same loop serves a store read synchronously and one read asynchronously. The
 * store filters by anchor and status on its indexes; tags are checked here.
 */
function* storedPages(
  options: ListOptions,
  decode: (row: StoredCallback) => CallbackRecord,
): Generator<StoreListQuery, ListPage, StoredCallback[]> {
  const { limit, after, statuses, tags } = listParams(options);
  const matches: CallbackRecord[] = [];
  let afterSeq = after;
  const chunk = Math.min(1000, limit + 1);
  while (matches.length <= limit) {
    const rows: StoredCallback[] = yield {
      afterSeq,
      anchor: options.anchor,
      statuses: statuses && ([...statuses] as CallbackStatus[]),
      limit: chunk,
    };
    for (const row of rows) {
      afterSeq = row.seq;
      const record = decode(row);
      if (tags.every((t) => record.tags.includes(t))) matches.push(record);
      if (matches.length > limit) break;
    }
    if (rows.length < chunk) break;
  }
  return toPage(matches, limit);
}

/** One page of a durable store's rows matching `options`, in creation order. */
export function listStored(
  options: ListOptions,
  query: (q: StoreListQuery) => StoredCallback[],
  decode: (row: StoredCallback) => CallbackRecord,
): ListPage {
  const pages = storedPages(options, decode);
  for (let step = pages.next(); ; step = pages.next(query(step.value)))
    if (step.done) return step.value;
}

/** {@link listStored} over a store read asynchronously. */
export async function listStoredAsync(
  options: ListOptions,
  query: (q: StoreListQuery) => Promise<StoredCallback[]>,
  decode: (row: StoredCallback) => CallbackRecord,
): Promise<ListPage> {
  const pages = storedPages(options, decode);
  for (let step = pages.next(); ; step = pages.next(await query(step.value)))
    if (step.done) return step.value;
}

function toPage(matches: CallbackRecord[], limit: number): ListPage {
  const page = matches.slice(0, limit);
  const items: ListedCallback[] = page.map((r) => ({
    id: r.id,
    token: r.token,
    anchor: r.anchor,
    status: r.status,
    tags: r.tags,
    createdAt: r.createdAt,
    data: r.data.value,
  }));
  const last = page.at(-1);
  return matches.length > limit && last ? { items, cursor: last.seq.toString(36) } : { items };
}

/** Checked paging parameters. */
function listParams(options: ListOptions): {
  limit: number;
  after: number;
  statuses: Set<string> | undefined;
  tags: readonly string[];
} {
  const limit = options.limit ?? 100;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) {
    throw new InvalidArgumentError(
      `options.limit must be an integer from 1 to 1000 (got ${String(limit)})`,
    );
  }
  let after = -1;
  if (options.cursor !== undefined) {
    after = Number.parseInt(String(options.cursor), 36);
    if (!/^[0-9a-z]{1,12}$/.test(String(options.cursor)) || Number.isNaN(after)) {
      throw new InvalidArgumentError(
        `options.cursor is not a cursor from a previous page (got ${JSON.stringify(options.cursor)})`,
      );
    }
  }
  const statuses =
    options.status === undefined ? undefined : new Set<string>([options.status].flat());
  const tags = options.tags ?? [];
  return { limit, after, statuses, tags };
}
