import express from 'express';
import type { CallbackEngine } from 'callback-engine';
import { createDispatchHandler, type DispatchHandlerOptions } from 'callback-engine/http';

/** Express 5: the Dispatch Callback Service under /hooks, mounted before any body parser. */
export function expressApp(engine: CallbackEngine, options?: DispatchHandlerOptions) {
  const app = express();
  // Express strips the mount path: the routes are /hooks/callbacks, /hooks/events, ...
  app.use('/hooks', createDispatchHandler(engine, options));
  app.use(express.json()); // body parsers for the rest of the app come after it
  return app;
}
