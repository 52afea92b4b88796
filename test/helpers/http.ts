import { afterEach } from 'vitest';
import { serve, type DispatchServer, type ServeOptions } from '../../src/http/index.js';
import type { CallbackEngine } from '../../src/index.js';
import { makeEngine } from './engine.js';

/** A JSON response body, for reading its fields. */
export const jsonOf = async (r: Response) => (await r.json()) as Record<string, unknown>;

/** A served engine per test, closed after each test. */
export interface ServiceFixture {
  /** Makes an engine (simulated clock), lets `setup` register anchors, and serves it. */
  start(
    setup: (engine: CallbackEngine) => void,
    options?: ServeOptions,
  ): Promise<{ engine: CallbackEngine; url: string }>;
  /** The current test's engine. */
  readonly engine: CallbackEngine;
  /** The current test's server. */
  readonly service: DispatchServer;
}

/** Registers the `afterEach` that closes what {@link ServiceFixture.start} opened. */
export function serviceFixture(): ServiceFixture {
  let engine: CallbackEngine | undefined;
  let service: DispatchServer | undefined;
  afterEach(async () => {
    await service?.close();
    await engine?.close();
    engine = service = undefined;
  });
  return {
    async start(setup, options) {
      ({ engine } = makeEngine());
      setup(engine);
      service = await serve(engine, options);
      return { engine, url: service.url };
    },
    get engine() {
      if (!engine) throw new Error('no engine: call start() first');
      return engine;
    },
    get service() {
      if (!service) throw new Error('no service: call start() first');
      return service;
    },
  };
}
