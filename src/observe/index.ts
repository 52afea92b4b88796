/**
 * callback-engine/dashboard: the live view of an engine (counts per state,
 * throughput, latency, recent transitions, per-callback history) and the
 * dashboard page that shows it.
 *
 * @packageDocumentation
 */

export { createDashboard, DASHBOARD_DEFAULTS, withDashboard } from './dashboard.js';
export type { DashboardHandler, DashboardOptions } from './dashboard.js';
export { dashboardPage } from './dashboard-page.js';
export { createMonitor } from './monitor.js';
export type {
  CallbackHistory,
  HistoryEvent,
  Monitor,
  MonitorOptions,
  MonitorView,
  TransitionRecord,
} from './monitor.js';
