import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The fenced block that follows `<!-- example: NAME -->` in the README. */
function block(name: string): string {
  const m = new RegExp(`<!-- example: ${name} -->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!m) throw new Error(`README has no example "${name}"`);
  return m[1]!;
}

describe('README examples run as shown', () => {
  it('the quick-start in the README is examples/quick-start.ts, and it runs to "complete"', () => {
    const file = readFileSync(new URL('../examples/quick-start.ts', import.meta.url), 'utf8');
    expect(block('quick-start').trim()).toBe(file.trim());
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/quick-start.ts'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out).toContain('created: create');
    expect(out).toMatch(
      /final: complete \{"orderId":7,.*"lastPct":100,"amount":42,"receipt":"R-7"\}/,
    );
  });
});

describe('README schemas example', () => {
  it('is examples/schemas.ts, and it refuses the bad report with its issues', () => {
    const file = readFileSync(new URL('../examples/schemas.ts', import.meta.url), 'utf8');
    expect(block('schemas').trim()).toBe(file.trim());
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/schemas.ts'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out).toContain('ship order 7 in EUR');
    expect(out).toContain('CBE_ERR_INVALID_DATA [{"path":["pct"],"message":');
    expect(out).toContain('data: {"orderId":7,"currency":"EUR","pct":40,"lastPct":40}');
  });
});

describe('README signed request', () => {
  it('is examples/signed-request.ts, and its signed binary CloudEvent is applied by a service with HMAC auth', async () => {
    const file = readFileSync(new URL('../examples/signed-request.ts', import.meta.url), 'utf8');
    expect(block('signed-request').trim()).toBe(file.trim());
    const { sendSignedEvent } = await import('../examples/signed-request.js');
    const { createCallbackEngine } = await import('../src/index.js');
    const { serve } = await import('../src/http/index.js');
    const engine = createCallbackEngine({ secrets: ['token-secret-0123456789abcdef'] });
    engine.anchor('payment');
    const service = await serve(engine, { auth: { hmac: { secret: 'shared-hmac-secret' } } });
    try {
      const cb = await engine.create('payment');
      const refused = await sendSignedEvent(service.url, 'another-secret', cb.token);
      expect(refused.status).toBe(401);
      const r = await sendSignedEvent(service.url, 'shared-hmac-secret', cb.token);
      expect(r.status).toBe(200);
      expect(await r.json()).toMatchObject({ status: 'complete', data: { amount: 42 } });
    } finally {
      await service.close();
      await engine.close();
    }
  });
});

describe('README framework recipes are the files the framework tests mount', () => {
  it('the Express and Fastify recipes are examples/express.ts and examples/fastify.ts', () => {
    for (const name of ['express', 'fastify']) {
      const file = readFileSync(new URL(`../examples/${name}.ts`, import.meta.url), 'utf8');
      expect(block(name).trim(), name).toBe(file.trim());
    }
  });

  it('does not point Node users at createBrowserInspector()', () => {
    expect(readme).toContain('createWebSocketInspector');
    expect(readme).not.toMatch(/`createBrowserInspector\(\)\.inspect`/);
  });
});

describe('README shows the real machine and a working HTTP service', () => {
  it('the Mermaid diagram in the README is toMermaid() of the lifecycle machine', async () => {
    const { toMermaid } = await import('../src/lifecycle/diagram.js');
    const m = /<!-- diagram: mermaid -->\s*```mermaid\n([\s\S]*?)```/.exec(readme);
    expect(m?.[1]).toBe(toMermaid());
  });

  it('the HTTP example in the README is examples/http-service.ts, and a callback URL report completes', () => {
    const file = readFileSync(new URL('../examples/http-service.ts', import.meta.url), 'utf8');
    expect(block('http-service').trim()).toBe(file.trim());
    const port = String(20_000 + Math.floor(Math.random() * 20_000));
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/http-service.ts'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, PORT: port },
    });
    expect(out).toContain(`dashboard: http://127.0.0.1:${port}/dashboard`);
    expect(out).toMatch(
      /^200 \{"status":"complete","token":"[\w-]+","data":\{"orderId":7,"amount":42,"paid":42\}\}$/m,
    );
  });
});

describe('the replicas example', () => {
  it('the example in "Running several replicas" is examples/replicas.ts, and a report through the other replica is applied', () => {
    const file = readFileSync(new URL('../examples/replicas.ts', import.meta.url), 'utf8');
    expect(block('replicas').trim()).toBe(file.trim());
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/replicas.ts'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out).toContain('applied complete {"orderId":7,"amount":42,"paid":42}');
    expect(out).toContain('read on a: complete');
  });
});
