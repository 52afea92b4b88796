/**
 * How a store that several engines share (replicas) brings its own routing: it wraps the
 * engine's local routing, with the engine's parts at hand.
 *
 * @module
 */

import type { ResolvedAnchor } from '../options/anchor.js';
import type { ResolvedEngineOptions } from '../options/engine.js';
import type { EventHub } from '../registry/event-hub.js';
import type { MailboxProcessor } from '../mailbox/processor.js';
import type { CallbackRegistry } from '../registry/registry.js';
import type { Stats } from '../registry/stats.js';
import type { TokenCodec } from '../token.js';
import type { LocalRouting } from './local.js';
import type { Routing } from './routing.js';

/** What a routing supplied by a store works with: the engine's parts. */
export interface RoutingContext {
  readonly node: string;
  readonly options: ResolvedEngineOptions;
  readonly anchors: ReadonlyMap<string, ResolvedAnchor>;
  readonly codec: TokenCodec;
  readonly stats: Stats;
  readonly events: EventHub;
  readonly registry: CallbackRegistry;
  readonly mailboxes: MailboxProcessor;
  /** Whether the engine is closed (a replica serves nothing more). */
  closed(): boolean;
}

/**
 * A store that answers for callbacks across several engines (replicas) supplies its own routing
 * around the engine's local one.
 */
export interface RoutingProvider {
  /** Tokens minted by any engine sharing the store verify here (replicas share their secrets). */
  readonly tokensFromAnyNode: boolean;
  routing(local: LocalRouting, context: RoutingContext): Routing;
}
