import Fastify from 'fastify';
import type { CallbackEngine } from 'callback-engine';
import { createDispatchHandler, type DispatchHandlerOptions } from 'callback-engine/http';

/** Fastify 5: the Dispatch Callback Service under /hooks, in a scope that leaves bodies unread. */
export async function fastifyApp(engine: CallbackEngine, options?: DispatchHandlerOptions) {
  const app = Fastify();
  const handler = createDispatchHandler(engine, { ...options, basePath: '/hooks' });
  await app.register((scope, _options, done) => {
    // Fastify would answer 415 to application/cloudevents+json and parse JSON itself:
    // in this scope only, accept every content type and leave the body to the handler.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, parsed) => parsed(null));
    scope.all('/hooks/*', (request, reply) => {
      reply.hijack();
      handler(request.raw, reply.raw);
    });
    done();
  });
  return app;
}
