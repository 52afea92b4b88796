/**
 * callback-engine/dashboard: the live view of an engine (counts per state,
 * throughput, latency, recent transitions, per-callback history), the
 * dashboard page that shows it, and the pictures of one callback's history
 * (its path on the lifecycle, its timeline).
 *
 * @packageDocumentation
 */

export { createDashboard, DASHBOARD_DEFAULTS, withDashboard } from './dashboard.js';
export type { DashboardHandler, DashboardOptions } from './dashboard.js';
export { dashboardPage } from './dashboard-page.js';
export { callbackPath, pathLine, pathMermaid, pathSvg } from './callback-path.js';
export type {
  CallbackPath,
  IgnoredReport,
  PathDetails,
  PathMove,
  PathPictureOptions,
  StepTries,
} from './callback-path.js';
export type { HistoryEntry, HistoryKind, HistoryPage } from '../history.js';
export { timelineOf } from './timeline.js';
export { timelineSvg } from './timeline-svg.js';
export { timelineText } from './timeline-text.js';
export type {
  HeartbeatWindow,
  StatusSpan,
  StepTry,
  Timeline,
  TimelineMark,
  TimelineOptions,
} from './timeline.js';
export { createMonitor } from './monitor.js';
export type {
  CallbackHistory,
  HistoryEvent,
  Monitor,
  MonitorOptions,
  MonitorView,
  TransitionRecord,
} from './monitor.js';
