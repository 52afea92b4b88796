/** Profiling driver: `node --cpu-prof --import tsx bench/profile-dispatch.ts` (not part of the suite). */
import { createCallbackEngine } from '../src/index.js';

const N = Number(process.argv[2] ?? 1000);
const TOTAL = Number(process.argv[3] ?? 300_000);
const engine = createCallbackEngine({
  node: 'p',
  secrets: ['profile-secret-0123456'],
  timeout: false,
});
engine.anchor('job');
const tokens: string[] = [];
for (let i = 0; i < N; i++) tokens.push((await engine.create('job', { data: { i } })).token);
const t0 = performance.now();
for (let done = 0; done < TOTAL; done += 100) {
  const ps: Promise<unknown>[] = [];
  for (let b = 0; b < 100; b++) {
    ps.push(
      engine.dispatch({
        type: 'CALLBACK',
        callbackToken: tokens[(done + b) % N]!,
        callbackStatus: 'progress',
        callbackData: { pct: done + b },
      }),
    );
  }
  await Promise.all(ps);
}
const ms = performance.now() - t0;
console.log(
  `${TOTAL} dispatches over ${N} callbacks: ${Math.round(TOTAL / (ms / 1000)).toLocaleString('en-US')}/s`,
);
await engine.close();
