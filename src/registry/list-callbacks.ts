/**
 * Paging through callbacks for {@link CallbackEngine.list}: filters, creation
 * order, opaque cursors.
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { StoreCountQuery, StoredCallback, StoreListQuery } from '../store/store.js';
import type { ListedCallback, ListPage } from '../types.js';
import type { CallbackRecord } from './record.js';

/** Filters and paging of `engine.list()`. */
export interface ListOptions {
  status?: CallbackStatus | readonly CallbackStatus[];
  anchor?: string;
  /** Callbacks carrying all of these tags. */
  tags?: readonly string[];
  /** The `cursor` of the previous page (listed in the same `order`). */
  cursor?: string;
  /** Page size, 1-1000. @default 100 */
  limit?: number;
  /** `'oldest'` first (creation order) or `'newest'` first. @default 'oldest' */
  order?: 'oldest' | 'newest';
  /**
   * Also count every callback the filters match, on all pages (`page.total`). With a durable
   * store that is one more query (a store that cannot count gives no total).
   * @default false
   */
  total?: boolean;
}

/**
 * One page of the records matching `options`, in creation order (or newest first).
 * @throws {@link InvalidArgumentError} for a bad `limit`, `cursor` or `order`.
 */
export function listCallbacks(
  sources: readonly Iterable<CallbackRecord>[],
  options: ListOptions,
): ListPage {
  const { limit, bound, newest, statuses, tags } = listParams(options);
  const matches: CallbackRecord[] = [];
  let total = 0;
  for (const source of sources) {
    for (const r of source) {
      if (statuses && !statuses.has(r.status)) continue;
      if (options.anchor !== undefined && r.anchor !== options.anchor) continue;
      if (!tags.every((t) => r.tags.includes(t))) continue;
      total++;
      if (newest ? r.seq >= bound : r.seq <= bound) continue;
      matches.push(r);
    }
  }
  matches.sort(newest ? (a, b) => b.seq - a.seq : (a, b) => a.seq - b.seq);
  return toPage(matches, limit, options.total === true ? total : undefined);
}

/**
 * The paging of a durable store's rows, as a generator: it yields each query and is sent the
 * rows, so the same loop serves a store read synchronously and one read asynchronously. The
 * store filters by anchor and status on its indexes; tags are checked here.
 */
function* storedPages(
  options: ListOptions,
  decode: (row: StoredCallback) => CallbackRecord,
): Generator<StoreListQuery, CallbackRecord[], StoredCallback[]> {
  const { limit, bound, newest, statuses, tags } = listParams(options);
  const matches: CallbackRecord[] = [];
  let seq = bound;
  const chunk = Math.min(1000, limit + 1);
  while (matches.length <= limit) {
    const rows: StoredCallback[] = yield {
      afterSeq: newest ? -1 : seq,
      ...(newest ? { beforeSeq: seq } : {}),
      anchor: options.anchor,
      statuses: statuses && ([...statuses] as CallbackStatus[]),
      limit: chunk,
    };
    for (const row of rows) {
      seq = row.seq;
      const record = decode(row);
      if (tags.every((t) => record.tags.includes(t))) matches.push(record);
      if (matches.length > limit) break;
    }
    if (rows.length < chunk) break;
  }
  return matches;
}

/** What a store is asked to count for `options`. */
function countQuery(options: ListOptions): StoreCountQuery {
  const { statuses, tags } = listParams(options);
  return {
    anchor: options.anchor,
    statuses: statuses && ([...statuses] as CallbackStatus[]),
    tags,
  };
}

/**
 * One page of a durable store's rows matching `options`, in creation order (or newest first).
 * @param count - how the store counts rows, for `options.total` (if it can).
 */
export function listStored(
  options: ListOptions,
  query: (q: StoreListQuery) => StoredCallback[],
  decode: (row: StoredCallback) => CallbackRecord,
  count?: (q: StoreCountQuery) => number,
): ListPage {
  const pages = storedPages(options, decode);
  let step = pages.next();
  while (!step.done) step = pages.next(query(step.value));
  const total = options.total === true && count ? count(countQuery(options)) : undefined;
  return toPage(step.value, listParams(options).limit, total);
}

/** {@link listStored} over a store read asynchronously. */
export async function listStoredAsync(
  options: ListOptions,
  query: (q: StoreListQuery) => Promise<StoredCallback[]>,
  decode: (row: StoredCallback) => CallbackRecord,
  count?: (q: StoreCountQuery) => Promise<number>,
): Promise<ListPage> {
  const pages = storedPages(options, decode);
  let step = pages.next();
  while (!step.done) step = pages.next(await query(step.value));
  const total = options.total === true && count ? await count(countQuery(options)) : undefined;
  return toPage(step.value, listParams(options).limit, total);
}

function toPage(matches: CallbackRecord[], limit: number, total: number | undefined): ListPage {
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
  return {
    items,
    ...(matches.length > limit && last ? { cursor: last.seq.toString(36) } : {}),
    ...(total !== undefined ? { total } : {}),
  };
}

/** Checked paging parameters: `bound` is the cursor's seq (exclusive) in the listing's direction. */
function listParams(options: ListOptions): {
  limit: number;
  bound: number;
  newest: boolean;
  statuses: Set<string> | undefined;
  tags: readonly string[];
} {
  const order = options.order ?? 'oldest';
  if (order !== 'oldest' && order !== 'newest')
    throw new InvalidArgumentError(
      `options.order must be "oldest" or "newest" (got ${JSON.stringify(String(order)).slice(0, 40)})`,
    );
  const newest = order === 'newest';
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
  const bound = options.cursor === undefined && newest ? Number.MAX_SAFE_INTEGER : after;
  return { limit, bound, newest, statuses, tags };
}
