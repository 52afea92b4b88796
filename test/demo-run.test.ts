import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

describe('npm start (the demo)', () => {
  it('`npm start -- --callbacks 2000` exits 0 with 0 lost updates', async () => {
    const { stdout } = await promisify(execFile)(
      'npm',
      ['start', '--silent', '--', '--callbacks', '2000'],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(stdout).toMatch(/dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard/);
    expect(stdout).toMatch(
      /[\d,]+ HTTP dispatches in [\d.]+ s: [\d,]+\/s, latency p50 [\d.]+ ms, p99 [\d.]+ ms/,
    );
    expect(stdout).toContain('final: complete 1,600, error 240, timeout 160');
    expect(stdout).toContain('lost updates: 0');
  }, 150_000);
});

describe('npm start -- --crash (the crash demo)', () => {
  it('SIGKILLs the engine under load, restarts it on the same file, and loses nothing', async () => {
    const { stdout } = await promisify(execFile)(
      'npm',
      ['start', '--silent', '--', '--crash', '--concurrency', '8'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(stdout).toMatch(
      /SIGKILL pid \d+ after [\d.]+ s under load: [\d,]+ creates and [\d,]+ progress reports acknowledged/,
    );
    expect(stdout).toMatch(
      /restarted on the same file: pid \d+ ready [\d,]+ ms after spawn \(engine\.ready\(\) [\d.]+ ms, [\d,]+ active callbacks recovered\)/,
    );
    expect(stdout).toMatch(
      /checked [1-9][\d,]* acknowledged creates and [\d,]+ acknowledged reports: 0 creates and 0 reports missing/,
    );
    expect(stdout).toContain('lost updates: 0');
  }, 90_000);
});
