/**
 * `callback-engine/metrics`: Prometheus metrics of an engine (`createMetrics()`) and a wrapper
 * that serves them at `/metrics` beside an HTTP handler (`withMetrics()`).
 *
 * @module
 */

export { createMetrics, withMetrics } from './observe/metrics.js';
export type {
  EngineMetrics,
  MetricsOptions,
  MetricsSource,
  WithMetricsOptions,
} from './observe/metrics.js';
