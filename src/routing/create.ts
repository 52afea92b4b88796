/**
 * The create path: options checked, an existing callback found by its idempotency key, the
 * parent checked, the record made, its `created` entry appended (with the create step it owes)
 * and committed before the create step runs, and the early events held for its correlation key
 * applied before `create()` resolves.
 *
 * @module
 */

import { CreatedAnswer, type Answer } from '../answer.js';
import { admitPatch, DataVersion, EMPTY_DATA, ingestData, patchBytesBound } from '../data.js';
import type { CallbackData } from '../data.js';
import { deadlineAt, durationMs } from '../duration.js';
import {
  DuplicateKeyError,
  InvalidArgumentError,
  ParentInactiveError,
  ParentNotFoundError,
} from '../errors.js';
import { isTerminal } from '../lifecycle/statuses.js';
import { checkIdempotencyKey, checkTags, type CreateOptions } from '../options/create.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import type { ResolvedEngineOptions } from '../options/engine.js';
import type { MailboxProcessor } from '../mailbox/processor.js';
import { CallbackRuntime, type Job } from '../registry/callback-runtime.js';
import { correlationKey } from '../registry/correlation.js';
import type { EventHub } from '../registry/event-hub.js';
import { creationKeys, type CallbackRecord } from '../registry/record.js';
import type { CallbackRegistry } from '../registry/registry.js';
import type { Stats } from '../registry/stats.js';
import { Telemetry, type Span } from '../telemetry.js';
import { decodeToken, type TokenCodec } from '../token.js';
import type { CreatedCallback, DispatchResult } from '../types.js';
import type { EarlyBackend } from './early.js';

/** What the create path needs. */
export interface CreateContext {
  readonly options: ResolvedEngineOptions;
  readonly codec: TokenCodec;
  readonly registry: CallbackRegistry;
  readonly mailboxes: MailboxProcessor;
  readonly stats: Stats;
  readonly events: EventHub;
  /** Where early events are held (set when some anchor may hold them). */
  early(): EarlyBackend | undefined;
  /** The next creation sequence number. */
  nextSeq(): number;
  /** A new callbackId (replicas: in a shard they own; a child in its parent's shard). */
  newId(parentId: string | undefined): string;
  /**
   * Replicas: the answer for a callback found by its idempotency key that another replica owns
   * while its create step is still owed (its owner answers once that step ran), else `undefined`.
   */
  elsewhere(record: CallbackRecord, options: CreateOptions): Promise<CreatedCallback> | undefined;
}

/**
 * Creates a callback at `anchor` (its creation data already checked against the anchor's
 * schema, if it has one: `checkedData`).
 */
export async function createCallback(
  ctx: CreateContext,
  anchor: ResolvedAnchor,
  options: CreateOptions,
  checkedData: CallbackData | undefined,
  span: Span | undefined,
): Promise<CreatedCallback> {
  const { registry, mailboxes } = ctx;
  const o = ctx.options;
  const tags = checkTags(options.tags);
  const idempotencyKey = checkIdempotencyKey(options.idempotencyKey);
  const idemKey =
    idempotencyKey === undefined ? undefined : `${anchor.name}\u0000${idempotencyKey}`;
  if (registry.prefetching)
    await registry.warm({
      ...(options.parentToken !== undefined
        ? { ids: [decodeToken(options.parentToken)?.id ?? ''] }
        : {}),
      ...(idemKey !== undefined ? { idempotencyKey: idemKey } : {}),
    });
  if (idemKey !== undefined) {
    const existing = existingByIdempotency(ctx, idemKey, anchor, options);
    if (existing) return existing;
  }
  const parent =
    options.parentToken === undefined ? undefined : parentFor(ctx, options.parentToken);
  const now = o.clock.now();
  const deadline = deadlineAt('options.timeout', options.timeout ?? anchor.timeout, now);
  const heartbeatOpt = options.heartbeat ?? anchor.heartbeat;
  const heartbeatMs =
    heartbeatOpt === undefined ? undefined : durationMs('options.heartbeat', heartbeatOpt, now);
  if (heartbeatMs !== undefined && heartbeatMs <= 0)
    throw new InvalidArgumentError('options.heartbeat must be longer than zero');
  const retentionOpt = options.retention ?? anchor.retention;
  const retention =
    retentionOpt === true ? true : durationMs('options.retention', retentionOpt, now);
  const createData = checkedData ?? ingestData('options.data', options.data, o.maxDataBytes);
  const createBytes = patchBytesBound(createData);
  // The base `{}` is 2 bytes; the bound of a merged patch covers its entries and commas.
  const dataBytes =
    admitPatch('options.data', DataVersion.EMPTY, 2, createData, createBytes, o.maxCallbackBytes) +
    createBytes;

  const id = ctx.newId(parent?.record.id);
  const record: CallbackRecord = {
    id,
    token: ctx.codec.mint(anchor.name, id),
    anchor: anchor.name,
    seq: ctx.nextSeq(),
    createdAt: now,
    tags,
    parentId: parent?.record.id,
    parentToken: parent?.record.token,
    idempotencyKey: idemKey,
    correlationKey: correlationKey(anchor, (key) => createData[key]),
    createdKeys: creationKeys(Object.keys(createData)),
    deadlineAt: deadline,
    heartbeatMs,
    retention,
    status: 'create',
    data: DataVersion.of(createData),
    children: undefined,
    terminalReport: undefined,
    stepError: undefined,
    owed: undefined,
    head: 0,
    ...(span ? { trace: span.spanContext() } : {}),
  };
  // No actor yet: it is activated by the first report that needs a transition (virtual actor).
  const rt = new CallbackRuntime(record, now);
  rt.dataBytes = dataBytes;
  const created = mailboxes.createdEntry(record, createData);
  registry.add(rt, parent);
  mailboxes.journal.append(rt, created);
  ctx.stats.add(record.anchor, 'create');
  ctx.stats.created++;
  ctx.events.emit('created', record, { data: createData });

  const earlyKey = anchor.early ? record.correlationKey : undefined;
  let claimed: Promise<DispatchResult | undefined> | undefined;
  const creating = new Promise<DispatchResult>((resolve, reject) => {
    const job: Job = {
      kind: 'create',
      status: 'create',
      data: createData,
      followers: [{ resolve, reject, outcome: 'applied' }],
      ...(span ? { trace: Telemetry.contextOf(span) } : {}),
    };
    if (!registry.durable) return mailboxes.enqueue(rt, job);
    // The record is committed before the create step runs: the token it hands out exists.
    rt.busy = true;
    rt.push(job);
    const open = () => {
      rt.busy = false;
      mailboxes.kick(rt);
    };
    mailboxes.journal.release(
      rt,
      () => {
        claimed =
          earlyKey === undefined
            ? undefined
            : ctx.early()?.claimAfterCommit(rt, job, earlyKey, open);
        if (claimed === undefined) open();
      },
      (err) => {
        rt.busy = false;
        // First: settling drops the runtime and rejects its queued jobs with the store's error.
        reject(err);
        registry.settle(rt);
      },
    );
  });
  // Early events held for this correlation key go into the mailbox right behind the create job.
  const early = earlyKey === undefined ? undefined : ctx.early()?.claimNow(rt, earlyKey);
  const result = await creating.catch(async (err: unknown) => {
    // Another replica created it first with the same idempotency key: that one is the answer.
    if (!(err instanceof DuplicateKeyError) || idemKey === undefined) throw err;
    await registry.warm({ idempotencyKey: idemKey });
    const existing = existingByIdempotency(ctx, idemKey, anchor, options);
    if (!existing) throw err;
    return existing;
  });
  if (!('outcome' in result)) return result;
  // create() resolves once the early events were applied (and, durable, committed): its
  // answer shows the callback after them.
  const applied = (early && (await early)) ?? (claimed && (await claimed));
  const answer = (applied ?? result).answer as Answer;
  return new CreatedAnswer(answer, id, anchor.attributes, record.parentToken);
}

/** The callback created with this idempotency key, answered once its create step ran. */
function existingByIdempotency(
  ctx: CreateContext,
  key: string,
  anchor: ResolvedAnchor,
  options: CreateOptions,
): Promise<CreatedCallback> | undefined {
  const record = ctx.registry.byIdempotencyKey(key);
  if (!record) return undefined;
  const elsewhere = ctx.elsewhere(record, options);
  if (elsewhere) return elsewhere;
  const { id } = record;
  const rt = ctx.registry.runtime(id);
  const make = () =>
    new CreatedAnswer(ctx.mailboxes.answer(record), id, anchor.attributes, record.parentToken);
  // While the first create's step is still running, answer once the mailbox reaches this read.
  if (rt && (rt.busy || rt.pending > 0 || rt.batch !== undefined)) {
    return new Promise<DispatchResult>((resolve, reject) => {
      ctx.mailboxes.enqueue(rt, {
        kind: 'read',
        status: 'create',
        data: EMPTY_DATA,
        followers: [{ resolve, reject, outcome: 'read' }],
      });
    }).then(make);
  }
  return Promise.resolve(make());
}

/** The parent named by `parentToken`: known and active, else a typed error. */
function parentFor(ctx: CreateContext, parentToken: unknown): CallbackRuntime {
  const found = ctx.registry.find(parentToken);
  if (found.kind === 'notFound') throw new ParentNotFoundError();
  const status = found.kind === 'live' ? found.rt.record.status : found.record.status;
  if (found.kind !== 'live' || isTerminal(status)) throw new ParentInactiveError(status);
  return found.rt;
}
