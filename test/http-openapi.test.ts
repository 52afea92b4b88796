import SwaggerParser from '@apidevtools/swagger-parser';
import { describe, expect, it } from 'vitest';
import { DISPATCH_STATUSES, type CallbackEngine } from '../src/index.js';
import {
  createOpenApiDocument,
  openApiDocument,
  serve,
  type DispatchServer,
} from '../src/http/index.js';
import { makeEngine } from './helpers/engine.js';

/** A JSON response body, for reading its fields. */
const jsonOf = async (r: Response) => (await r.json()) as Record<string, unknown>;

type Obj = Record<string, unknown>;
const HTTP_METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

/** Every `$ref` in the document, with the JSON pointer it names. */
function refs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) refs(v, out);
  else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

function resolvePointer(doc: unknown, ref: string): unknown {
  expect(ref.startsWith('#/')).toBe(true);
  return ref
    .slice(2)
    .split('/')
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce<unknown>((node, key) => (node as Obj | undefined)?.[key], doc);
}

/** Structural checks of an OpenAPI 3.1 operation (responses, parameters, request body). */
function checkOperation(where: string, op: Obj, pathTemplate: string): void {
  expect(typeof op.summary === 'string' || typeof op.description === 'string', where).toBe(true);
  const responses = op.responses as Obj;
  expect(Object.keys(responses).length, where).toBeGreaterThan(0);
  for (const [code, response] of Object.entries(responses)) {
    expect(code, where).toMatch(/^([1-5]\d\d|default)$/);
    expect(typeof (response as Obj).description, `${where} ${code}`).toBe('string');
  }
  const params = (op.parameters ?? []) as Obj[];
  const templated = [...pathTemplate.matchAll(/\{([^}$]+)\}/g)].map((m) => m[1]);
  for (const name of templated) {
    const p = params.find((x) => x.name === name && x.in === 'path');
    expect(p, `${where}: path parameter ${name}`).toBeDefined();
    expect(p!.required, `${where}: ${name} required`).toBe(true);
  }
  if (op.requestBody !== undefined) {
    const content = (op.requestBody as Obj).content as Obj;
    for (const [type, media] of Object.entries(content)) {
      expect(type, where).toMatch(/^[a-z]+\/[a-z0-9.+-]+$/);
      expect((media as Obj).schema, `${where} ${type}`).toBeDefined();
    }
  }
}

describe('the OpenAPI document', () => {
  it('is a structurally valid OpenAPI 3.1 document of every route', () => {
    const doc = openApiDocument;
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    const info = doc.info as Obj;
    expect(typeof info.title).toBe('string');
    expect(typeof info.version).toBe('string');
    const paths = doc.paths as Record<string, Obj>;
    expect(Object.keys(paths).sort()).toEqual(
      [
        '/callbacks',
        '/callbacks/{token}',
        '/callbacks/{token}/{status}',
        '/events',
        '/openapi.json',
      ].sort(),
    );
    const operationIds = new Set<string>();
    for (const [path, item] of Object.entries(paths)) {
      expect(path.startsWith('/')).toBe(true);
      for (const [method, op] of Object.entries(item)) {
        expect(HTTP_METHODS.has(method), `${path} ${method}`).toBe(true);
        checkOperation(`${method} ${path}`, op as Obj, path);
        const id = (op as Obj).operationId as string;
        expect(operationIds.has(id), `duplicate operationId ${id}`).toBe(false);
        operationIds.add(id);
      }
    }
    for (const ref of refs(doc)) expect(resolvePointer(doc, ref), ref).toBeDefined();
    const statusParam = (
      (paths['/callbacks/{token}/{status}']!.post as Obj).parameters as Obj[]
    ).find((p) => p.name === 'status')!;
    expect((statusParam.schema as Obj).enum).toEqual([...DISPATCH_STATUSES]);
  });

  it('has a callbacks object telling an outside service how to call back', () => {
    const doc = openApiDocument;
    const getOp = (doc.paths as Record<string, Obj>)['/callbacks/{token}']!.get as Obj;
    const reusable = ((doc.components as Obj).callbacks as Record<string, Record<string, Obj>>)
      .callbackUrl!;
    for (const callbacks of [
      getOp.callbacks as Record<string, Record<string, Obj>>,
      { callbackUrl: reusable },
    ]) {
      for (const [name, callback] of Object.entries(callbacks)) {
        for (const [expression, item] of Object.entries(callback)) {
          // A runtime expression ({$url}, {$request.body#/...}) followed by the status segment.
          expect(expression, name).toMatch(
            /^\{\$(url|request\.(body#\/[\w/]+|path\.\w+))\}\/\{status\}$/,
          );
          const post = item.post as Obj;
          checkOperation(`${name} ${expression}`, post, '/{status}');
          expect(Object.keys(post.responses as Obj)).toEqual(
            expect.arrayContaining(['200', '404', '409', '413']),
          );
        }
      }
    }
  });

  it('follows basePath, server URL and auth, and is served at /openapi.json', async () => {
    const doc = createOpenApiDocument({
      basePath: '/hooks',
      serverUrl: 'https://x.example',
      auth: { hmac: { header: 'x-sig' } },
    });
    expect(Object.keys(doc.paths as Obj).every((p) => p.startsWith('/hooks/'))).toBe(true);
    expect(doc.servers).toEqual([{ url: 'https://x.example' }]);
    const scheme = ((doc.components as Obj).securitySchemes as Obj).signature as Obj;
    expect(scheme).toMatchObject({ type: 'apiKey', in: 'header', name: 'x-sig' });
    expect(((doc.paths as Record<string, Obj>)['/hooks/events']!.post as Obj).security).toEqual([
      { signature: [] },
    ]);
    expect(Reflect.set(openApiDocument, 'openapi', 'x')).toBe(false);
    expect(openApiDocument.openapi).toBe('3.1.0');

    let engine: CallbackEngine | undefined;
    let service: DispatchServer | undefined;
    try {
      ({ engine } = makeEngine());
      service = await serve(engine, { basePath: '/hooks' });
      const r = await fetch(`${service.url}/hooks/openapi.json`);
      expect(r.status).toBe(200);
      expect(Object.keys((await jsonOf(r)).paths as object)).toContain(
        '/hooks/callbacks/{token}/{status}',
      );
    } finally {
      await service?.close();
      await engine?.close();
    }
  });
});

describe('the OpenAPI document passes a real validator (@apidevtools/swagger-parser)', () => {
  it('is valid with defaults and with every option, and carries servers from baseUrl', async () => {
    for (const doc of [
      openApiDocument,
      createOpenApiDocument({
        basePath: '/hooks',
        serverUrl: 'https://x.example/hooks',
        auth: { bearer: true, hmac: { header: 'callback-signature' } },
      }),
    ]) {
      // validate() dereferences in place: give it a copy.
      await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeDefined();
    }
    let engine: CallbackEngine | undefined;
    let service: DispatchServer | undefined;
    try {
      ({ engine } = makeEngine({ baseUrl: 'https://orders.example.com/hooks' }));
      service = await serve(engine, { basePath: '/hooks' });
      const served = await jsonOf(await fetch(`${service.url}/hooks/openapi.json`));
      expect(served.servers).toEqual([{ url: 'https://orders.example.com' }]);
      await expect(SwaggerParser.validate(served as never)).resolves.toBeDefined();
    } finally {
      await service?.close();
      await engine?.close();
    }
  });

  it('documents the Callback-Outcome header and the error codes of the edge', () => {
    const paths = openApiDocument.paths as Record<string, Obj>;
    const ok = ((paths['/callbacks']!.post as Obj).responses as Record<string, Obj>)['200']!;
    const header = (ok.headers as Record<string, Obj>)['Callback-Outcome']!;
    expect((header.schema as Obj).enum).toEqual([
      'applied',
      'ignored',
      'replayed',
      'conflict',
      'notFound',
      'read',
      'queued',
    ]);
    const events = (paths['/events']!.post as Obj).responses as Record<string, Obj>;
    expect(events['403']!.description).toContain('CBE_ERR_UNTRUSTED_CORRELATION');
    expect(
      ((paths['/callbacks']!.post as Obj).responses as Record<string, Obj>)['503']!.description,
    ).toContain('CBE_ERR_ORIGIN_UNAVAILABLE');
  });

  it('lists both read actions and the exists status', () => {
    const schemas = (openApiDocument.components as Obj).schemas as Record<string, Obj>;
    const variants = schemas.CallbackMessage!.oneOf as Obj[];
    const read = variants.find((v) => (v.required as string[]).includes('callbackAction'))!;
    const action = (read.properties as Record<string, Obj>).callbackAction!;
    expect(action.enum).toEqual(['getCallback', 'exists']);
    const status = (schemas.Answer!.properties as Record<string, Obj>).status!;
    expect(status.enum).toContain('exists');
  });
});
