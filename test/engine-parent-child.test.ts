import { afterEach, describe, expect, it } from 'vitest';
import {
  ParentInactiveError,
  ParentNotFoundError,
  type CallbackEngine,
  type SimulatedClock,
} from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
let clock: SimulatedClock;
afterEach(() => engine.close());

describe('parent and child (spec 9)', () => {
  it('when a parent ends, active children become orphan down the whole tree and their anchors resume', async () => {
    ({ engine, clock } = makeEngine());
    const orphaned: string[] = [];
    engine.anchor('job', { next: { orphan: (cb) => void orphaned.push(cb.data.name as string) } });
    const root = await engine.create('job', { data: { name: 'root' } });
    const a = await engine.create('job', { data: { name: 'a' }, parentToken: root.token });
    const b = await engine.create('job', { data: { name: 'b' }, parentToken: root.token });
    const a1 = await engine.create('job', { data: { name: 'a1' }, parentToken: a.token });
    const done = await engine.create('job', { data: { name: 'done' }, parentToken: a.token });
    await engine.dispatch(report(done.token, 'complete'));
    expect(a1.attributes.callbackParentToken).toBe(a.token);

    await engine.dispatch(report(root.token, 'complete'));
    const final = await engine.wait(root.token, { children: true });
    expect(final.status).toBe('complete');
    for (const cb of [a, b, a1]) {
      const x = await engine.get(cb.token);
      expect(x.status).toBe('orphan');
      expect(x.data.reason).toBe('parent-inactive');
    }
    expect((await engine.get(done.token)).status).toBe('complete');
    expect(orphaned.sort()).toEqual(['a', 'a1', 'b']);
    expect((await engine.dispatch(report(a1.token, 'progress'))).status).toBe('orphan');
    expect(engine.stats().orphaned).toBe(3);
    expect(clock.now()).toBeGreaterThan(0);
  });

  it('orphans a deep chain iteratively (no stack growth)', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const root = await engine.create('job');
    let parent = root.token;
    const chain: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const cb = await engine.create('job', { parentToken: parent });
      chain.push(cb.token);
      parent = cb.token;
    }
    await engine.cancel(root.token);
    await engine.wait(root.token, { children: true });
    expect((await engine.get(chain.at(-1)!)).status).toBe('orphan');
    expect(engine.stats().byStatus.orphan).toBe(3000);
  });

  it('creation with an unknown, forged or inactive parent fails clearly', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const p = await engine.create('job');
    await engine.dispatch(report(p.token, 'error', { message: 'x' }));
    await expect(engine.create('job', { parentToken: p.token })).rejects.toBeInstanceOf(
      ParentInactiveError,
    );
    await expect(engine.create('job', { parentToken: p.token })).rejects.toThrow(
      /no longer active \(status "error"\)/,
    );
    await expect(engine.create('job', { parentToken: 'garbage' })).rejects.toBeInstanceOf(
      ParentNotFoundError,
    );
    await expect(engine.create('job', { parentToken: 'garbage' })).rejects.toMatchObject({
      code: 'CBE_ERR_PARENT_NOT_FOUND',
      statusCode: 404,
    });
  });

  it('a child ending does not touch its parent', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const p = await engine.create('job');
    const c = await engine.create('job', { parentToken: p.token });
    await engine.dispatch(report(c.token, 'error', { message: 'child failed' }));
    expect((await engine.get(p.token)).status).toBe('create');
  });
});
