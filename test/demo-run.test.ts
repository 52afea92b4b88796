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

describe('npm start -- --replicas 3 (the cluster demo)', () => {
  // PostgreSQL: PG_URL, the local server, or the run's embedded one (test/setup/postgres.ts).
  // The replicas forward over NATS where it answers, else over PostgreSQL.
  it('runs three engine processes on PostgreSQL, SIGKILLs one, and loses nothing', async () => {
    const { stdout } = await promisify(execFile)(
      'npm',
      ['start', '--silent', '--', '--replicas', '3', '--callbacks', '120'],
      { encoding: 'utf8', timeout: 90_000 },
    );
    expect(stdout).toMatch(/replicas ready in [\d,]+ ms: r1 pid \d+ port \d+/);
    expect(stdout).toMatch(/SIGKILL r\d \(pid \d+\) after [\d.]+ s .*; pid gone: yes/);
    expect(stdout).toMatch(
      /takeover: every report applied directly again [\d,]+ ms after the SIGKILL/,
    );
    expect(stdout).toMatch(
      /checked 120 callbacks through the surviving replicas: ([\d,]+) acknowledged reports, \1 applied, 0 duplicated, 0 callbacks out of order/,
    );
    expect(stdout).toContain('lost updates: 0');
  }, 120_000);
});
