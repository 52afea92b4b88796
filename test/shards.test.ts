import { describe, expect, it } from 'vitest';
import { shardOf } from '../src/store/shards.js';
import { newCallbackId } from '../src/token.js';

describe('shardOf (stored with every row: it must never change)', () => {
  it('is stable across versions for known ids', () => {
    // FNV-1a of the id's characters, modulo the shard count.
    expect(shardOf('', 64)).toBe(0x811c9dc5 % 64);
    expect(shardOf('a', 64)).toBe(0xe40c292c % 64);
    expect(shardOf('AAAAAAAAAAAAAAAAAAAAAA', 64)).toBe(shardOf('AAAAAAAAAAAAAAAAAAAAAA', 64));
    expect(shardOf('x', 1)).toBe(0);
  });

  it('spreads callback ids evenly over the shards', () => {
    const counts = new Array<number>(64).fill(0);
    const n = 64_000;
    for (let i = 0; i < n; i++) counts[shardOf(newCallbackId(), 64)]!++;
    // 1,000 expected per shard; a shard off by more than 20% would make ownership lopsided.
    for (const c of counts) {
      expect(c).toBeGreaterThan(800);
      expect(c).toBeLessThan(1200);
    }
  });
});
