/**
 * Every TypeScript block in README.md and docs/*.md is an example file, type-checked with the
 * project's settings; the examples that print something run, and print what the page says.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const pages = [
  'README.md',
  ...readdirSync(join(root, 'docs')).flatMap((f) => (f.endsWith('.md') ? [`docs/${f}`] : [])),
];

/** A fenced code block of a page. */
interface Block {
  page: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  /** The `<!-- example: NAME -->` marker right before it, if any. */
  example: string | undefined;
  /** The block that follows "prints" right after it, if any. */
  prints: string | undefined;
}

function blocksOf(page: string): Block[] {
  const lines = readFileSync(join(root, page), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && lines[end] !== '```') end++;
    let before = i - 1;
    while (before >= 0 && lines[before]!.trim() === '') before--;
    const marker = /^<!-- example: ([\w/-]+) -->$/.exec(lines[before] ?? '');
    blocks.push({
      page,
      line: i + 1,
      lang: open[1]!,
      code: lines.slice(i + 1, end).join('\n'),
      example: marker?.[1],
      prints: undefined,
    });
    i = end;
  }
  // "prints" on its own line between two blocks: the second is the first's output.
  for (let b = 0; b + 1 < blocks.length; b++) {
    const between = lines.slice(blocks[b]!.line, blocks[b + 1]!.line - 1).join('\n');
    const after = between.slice(between.indexOf('\n```\n') + 5);
    if (/^\s*prints\s*$/.test(after)) blocks[b]!.prints = blocks[b + 1]!.code;
  }
  return blocks;
}

const blocks = pages.flatMap(blocksOf);
const tsBlocks = blocks.filter((b) =>
  ['ts', 'typescript', 'tsx', 'js', 'javascript'].includes(b.lang),
);
const exampleFile = (name: string) => join(root, 'examples', `${name}.ts`);

/** Runs an example with tsx and the project's tsconfig (its paths name the package), in `cwd`. */
function runExample(name: string, cwd = root, env: Record<string, string> = {}): string {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return execFileSync(process.execPath, ['--import', tsx, exampleFile(name)], {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TSX_TSCONFIG_PATH: join(root, 'tsconfig.json'), ...env },
  });
}

describe('code blocks in README.md and docs/', () => {
  it('finds the pages and their TypeScript blocks', () => {
    expect(pages).toContain('docs/guide.md');
    expect(tsBlocks.length).toBeGreaterThan(15);
  });

  it('every TypeScript block is an example file, character for character', () => {
    for (const b of tsBlocks) {
      const where = `${b.page}:${b.line}`;
      expect(b.lang, `${where}: mark TypeScript blocks as ts`).toBe('ts');
      expect(
        b.example,
        `${where}: a ts block needs <!-- example: NAME --> and examples/NAME.ts`,
      ).toBeDefined();
      expect(b.code.trim(), where).toBe(readFileSync(exampleFile(b.example!), 'utf8').trim());
    }
  });

  it('every example shown type-checks with the project settings', () => {
    const config = ts.getParsedCommandLineOfConfigFile(
      join(root, 'tsconfig.json'),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (d) => {
          throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
        },
      },
    )!;
    const files = [...new Set(tsBlocks.map((b) => exampleFile(b.example!)))];
    const program = ts.createProgram(files, { ...config.options, noEmit: true });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const at = d.file
        ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}: `
        : '';
      return at + ts.flattenDiagnosticMessageText(d.messageText, '\n');
    });
    expect(problems).toEqual([]);
  }, 120_000);

  it('a "mermaid" block marked as the lifecycle is what the machine draws', async () => {
    const { toMermaid } = await import('../src/diagrams/diagram.js');
    const guide = readFileSync(join(root, 'docs/guide.md'), 'utf8');
    const m = /<!-- diagram: mermaid -->\s*```mermaid\n([\s\S]*?)```/.exec(guide);
    expect(m?.[1]).toBe(toMermaid());
  });
});

describe('the examples print what the pages say', () => {
  const printing = tsBlocks.filter((b) => b.prints !== undefined);

  it('finds the examples that show their output', () => {
    expect(printing.map((b) => b.example).sort()).toEqual([
      'deadlines',
      'early-events',
      'metrics',
      'parent-child',
      'quick-start',
      'relay',
      'retries',
      'schemas',
      'signed-client',
      'sqlite-store',
      'two-replicas',
      'worker-step',
    ]);
  });

  for (const b of printing) {
    it(`${b.example} (${b.page})`, () => {
      expect(runExample(b.example!).trimEnd()).toBe(b.prints!.trimEnd());
    }, 90_000);
  }

  it('diagrams: writes the anchor diagram, the path and the timeline, and prints the timeline', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbe-docs-diagrams-'));
    try {
      const out = runExample('diagrams', dir);
      expect(out).toMatch(/path: create → start → complete/);
      expect(out).toMatch(/report accept +start +ignored/);
      for (const file of ['ocr-anchor.svg', 'ocr-path.svg', 'ocr-timeline.svg'])
        expect(readFileSync(join(dir, file), 'utf8'), file).toMatch(/^<svg/);
      expect(readFileSync(join(dir, 'ocr-path.mmd'), 'utf8')).toContain('stateDiagram-v2');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('signed-request: its signed binary CloudEvent is applied by a service with HMAC auth', async () => {
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

  it('http-service: a callback URL report completes behind the dashboard', () => {
    const port = String(20_000 + Math.floor(Math.random() * 20_000));
    const out = runExample('http-service', root, { PORT: port });
    expect(out).toContain(`dashboard: http://127.0.0.1:${port}/dashboard`);
    expect(out).toMatch(
      /^200 \{"status":"complete","token":"[\w-]+","data":\{"orderId":7,"amount":42,"paid":42\}\}$/m,
    );
  }, 90_000);

  it('every example file shown is either run above, imported above, or a module a run loads', () => {
    const covered = new Set([
      ...printing.map((b) => b.example),
      'diagrams',
      'signed-request',
      'http-service',
      'http-call-in', // run by test/readme-examples.test.ts
      'mount-fastify', // run by test/docs-mounting.test.ts
      'mount-express', // run by test/docs-mounting.test.ts
      'steps/score', // loaded by worker-step on a worker thread
      'inspect-stately', // needs a browser and Stately's inspector server: type-checked only
    ]);
    for (const b of tsBlocks) expect(covered.has(b.example), `${b.page}: ${b.example}`).toBe(true);
  });
});

describe('other blocks', () => {
  it('carry a language tag, except program output, which follows "prints"', () => {
    for (const b of blocks.filter((x) => x.lang === '')) {
      const lines = readFileSync(join(root, b.page), 'utf8').split('\n');
      const lead = lines.slice(Math.max(0, b.line - 4), b.line - 1).join(' ');
      expect(lead, `${b.page}:${b.line}`).toMatch(/\bprints\b/);
    }
  });
});
