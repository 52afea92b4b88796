import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (path: string) => fileURLToPath(new URL(`./src/${path}`, import.meta.url));

export default defineConfig({
  // The examples import the package by name; tests run them against the sources (as tsconfig paths do).
  resolve: {
    alias: [
      { find: /^callback-engine\/http$/, replacement: src('http/index.ts') },
      { find: /^callback-engine\/dashboard$/, replacement: src('dashboard.ts') },
      { find: /^callback-engine\/sqlite$/, replacement: src('store/sqlite.ts') },
      { find: /^callback-engine\/metrics$/, replacement: src('metrics.ts') },
      { find: /^callback-engine\/client$/, replacement: src('client/index.ts') },
      { find: /^callback-engine\/postgres$/, replacement: src('postgres.ts') },
      { find: /^callback-engine\/store$/, replacement: src('store/index.ts') },
      { find: /^callback-engine\/fastify$/, replacement: src('mount/fastify.ts') },
      { find: /^callback-engine\/express$/, replacement: src('mount/express.ts') },
      { find: /^callback-engine$/, replacement: src('index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // PG_URL, else the local server, else one embedded PostgreSQL for the whole run.
    globalSetup: ['test/setup/postgres.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
