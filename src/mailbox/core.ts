/**
 * What every part of the mailbox shares: the engine's parts, the two shutdown flags, and the
 * few rules they all apply: an entry recorded (built, applied to the record, appended to the
 * journal), the step a status owes, and answers released once the callback's entries so far
 * are committed.
 *
 * @module
 */

import { Answer } from '../answer.js';
import { EMPTY_DATA, type CallbackData, type DataVersion } from '../data.js';
import { toError } from '../thrown.js';
import type { HistoryKind } from '../history.js';
import type { KeepAlive } from '../keep-alive.js';
import { isTerminal, lookupStep, type CallbackStatus } from '../lifecycle/statuses.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import type { ResolvedEngineOptions } from '../options/engine.js';
import type { LazyPool } from '../pool/lazy-pool.js';
import type { CallbackRuntime, Follower, Job } from '../registry/callback-runtime.js';
import type { EventHub } from '../registry/event-hub.js';
import type { CallbackRecord } from '../registry/record.js';
import type { CallbackRegistry, RegistryTimers } from '../registry/registry.js';
import type { Stats } from '../registry/stats.js';
import type { DispatchResult } from '../types.js';
import { applyEntry, type JournalEntry, type OwedInvocation } from '../journal/journal.js';
import { JournalWriter } from './journal-writer.js';

/** What the mailbox needs from the engine. */
export interface ProcessorDeps {
  readonly options: ResolvedEngineOptions;
  readonly anchors: ReadonlyMap<string, ResolvedAnchor>;
  readonly registry: CallbackRegistry;
  readonly stats: Stats;
  readonly events: EventHub;
  /** Held while a mailbox waits for a step or a retry, so the process lives until it ends. */
  readonly keepAlive: KeepAlive;
}

/** What an entry carries besides what every entry has (its seq, time and resulting status). */
export type EntryFields = Omit<JournalEntry, 'seq' | 'at' | 'status' | 'kind'> & {
  readonly kind: HistoryKind;
  readonly status?: CallbackStatus;
};

/** Why a terminal transition happens: the fields of the entry that records it. */
export type EndCause = Omit<EntryFields, 'status' | 'data' | 'merge' | 'owed' | 'terminalReport'>;

/**
 * Longest step error message recorded. The step runner already cuts what a step throws to a
 * documented size (`toStepError`); this bound only guards what reaches the journal otherwise.
 */
const MAX_STEP_ERROR_LENGTH = 4096;

/** A step failure's message, whatever was thrown: never throws, bounded. */
export function stepErrorMessage(value: unknown): string {
  const text = toError(value).message;
  return text.length <= MAX_STEP_ERROR_LENGTH ? text : `${text.slice(0, MAX_STEP_ERROR_LENGTH)}…`;
}

/** The shared state and rules of the mailbox's parts. */
export class MailboxCore {
  readonly o: ResolvedEngineOptions;
  readonly anchors: ReadonlyMap<string, ResolvedAnchor>;
  readonly registry: CallbackRegistry;
  /** The write path: journal entries to the store, answers after COMMIT. */
  readonly journal: JournalWriter;
  /** The callbacks' timers (the registry's). */
  readonly timers: RegistryTimers;
  readonly stats: Stats;
  readonly events: EventHub;
  readonly keepAlive: KeepAlive;
  /** The worker pool, loaded on the first worker step so the root import stays light. */
  readonly pool: LazyPool;
  /** `close()` began: no new job starts. */
  closed = false;
  /** `close()`'s grace period ended: no step starts any more (what is owed stays owed). */
  cutOff = false;

  constructor(deps: ProcessorDeps, pool: LazyPool) {
    this.o = deps.options;
    this.anchors = deps.anchors;
    this.registry = deps.registry;
    this.journal = new JournalWriter(deps);
    this.timers = deps.registry.timers;
    this.stats = deps.stats;
    this.events = deps.events;
    this.keepAlive = deps.keepAlive;
    this.pool = pool;
  }

  /**
   * Records one entry: built from the machine's decision, applied to the record (the machine's
   * data, when it merged the report itself, is passed as `data`), appended to the journal.
   */
  record(rt: CallbackRuntime, fields: EntryFields, data?: DataVersion): JournalEntry {
    const record = rt.record;
    const from = record.status;
    // Every caller passes a fresh object: it becomes the entry (no copy on the hot path). The keys
    // come out in the order a copy would give: the fields', then seq, at, and status if absent.
    const entry = fields as { -readonly [K in keyof JournalEntry]: JournalEntry[K] };
    entry.seq = record.head + 1;
    entry.at = this.o.clock.now();
    entry.status = fields.status ?? from;
    applyEntry(record, entry, data);
    this.journal.append(rt, entry);
    if (entry.status !== from) {
      this.stats.move(record.anchor, from, entry.status);
      this.events.emit('transitioned', record, { from });
    }
    return entry;
  }

  /** The invocation of `status`'s step for this report, if the anchor has a step for it. */
  owes(
    record: CallbackRecord,
    status: CallbackStatus,
    report: CallbackData,
  ): OwedInvocation | undefined {
    const anchor = this.anchors.get(record.anchor);
    const step = anchor && lookupStep(anchor.next, status);
    return step ? { step: status, attempt: 1, report } : undefined;
  }

  /**
   * The `created` entry of a new callback (the registry appends it with the row's insert): it
   * owes the anchor's `create` step, if there is one.
   */
  createdEntry(record: CallbackRecord, data: CallbackData): JournalEntry {
    const owed = this.owes(record, 'create', EMPTY_DATA);
    const entry: JournalEntry = {
      seq: 1,
      at: record.createdAt,
      kind: 'created',
      status: 'create',
      data,
      merge: true,
      ...(owed ? { owed } : {}),
    };
    record.owed = owed;
    record.head = 1;
    return entry;
  }

  /** For the step of a terminal status: the record's removal time once that step ended. */
  endOfTerminalStep(record: CallbackRecord, owed: OwedInvocation): { removeAt?: number } {
    if (!isTerminal(owed.step) || record.removeAt !== undefined) return {};
    const at = this.registry.removeAt(record);
    return at === undefined ? {} : { removeAt: at };
  }

  /** The answer for a callback as it is now. */
  answer(record: CallbackRecord): Answer {
    const anchor = this.anchors.get(record.anchor);
    return new Answer(
      record.status,
      record.token,
      record.data,
      anchor?.attributes,
      record.id,
      record.parentToken,
      record.stepError,
    );
  }

  /**
   * Answers followers once the callback's entries so far are committed (at once in memory
   * mode): nothing is answered as done before it is in the store.
   */
  resolve(rt: CallbackRuntime, followers: readonly Follower[], result: DispatchResult): void {
    if (followers.length === 0) return;
    if (!this.registry.durable) {
      for (const f of followers) f.resolve(result);
      return;
    }
    this.journal.release(
      rt,
      () => {
        for (const f of followers) f.resolve(result);
      },
      (err) => {
        for (const f of followers) f.reject(err);
      },
    );
  }

  /** Answers a job's followers with the callback as it is, once its entries are committed. */
  answerJob(rt: CallbackRuntime, job: Job): void {
    const followers = job.followers;
    if (followers.length === 0) return;
    const answer = this.answer(rt.record);
    if (!this.registry.durable) {
      for (const f of followers) f.resolve({ answer, outcome: f.outcome });
      return;
    }
    this.journal.release(
      rt,
      () => {
        for (const f of followers) f.resolve({ answer, outcome: f.outcome });
      },
      (err) => {
        for (const f of followers) f.reject(err);
      },
    );
  }
}
